"""The package's imports go one way (docs/design.md, "Layers"), and no two modules import each other.

Imports inside functions count too: a lazy import is still a dependency."""

import ast
import pathlib

import tqjax

ROOT = pathlib.Path(tqjax.__file__).parent

# Top to bottom; a package may import those on its own row or below (docs/design.md, "Layers").
ROWS = (
    ("cli",),
    ("sentiment",),
    ("train", "eval"),
    ("jobs",),
    ("api",),
    ("decoding",),
    ("io", "parallel", "world"),
    ("models",),
)
LEVEL = {pkg: len(ROWS) - i for i, row in enumerate(ROWS) for pkg in row}


def _module(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """``{module: the tqjax modules it imports}`` (a ``from package import name`` counts as the
    module ``package.name`` when that is a module, else as ``package``)."""
    modules = {_module(p) for p in ROOT.rglob("*.py")}
    out = {}
    for path in ROOT.rglob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("tqjax.")}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("tqjax"):
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    found.add(sub if sub in modules else node.module)
        out[_module(path)] = found
    return out


def test_the_table_names_every_package():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages - {"checkpoints"} == set(LEVEL)


def test_no_package_imports_a_higher_one():
    upward = []
    for module, targets in _imports().items():
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in LEVEL:
            continue                                # tqjax/__init__.py: the public surface
        for target in targets:
            pkg = target.split(".")[1] if "." in target else None
            if pkg in LEVEL and LEVEL[pkg] > LEVEL[parts[1]]:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_import_cycle_between_modules():
    """Between modules (package ``__init__`` files, which only re-export, are left out)."""
    graph = {m: {t for t in ts if t.count(".") >= 2} for m, ts in _imports().items() if m.count(".") >= 2}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), set()) - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    cycles = sorted({" <-> ".join(sorted((m, t))) for m in graph for t in graph[m] if m in reach(t)})
    assert cycles == []
