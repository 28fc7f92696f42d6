"""This tree against an earlier commit, side by side: TQ* throughput on the shipped task, fused
path and text path, so a refactor can show it costs nothing.

The earlier commit is checked out into a temporary git worktree. Each tree runs in its own
process (`python benchmarks/against_ref.py --child`), which loads the shipped models, warms up
(compiling every program), then times ``--repeats`` decodes of the same prompts and prints the
fastest. The processes run one after the other, ``--rounds`` times, the order flipping each round,
so a burst of load on a shared machine, or a cost of running first, lands on both sides; each side
keeps its fastest time. Tokens are
compared between the trees.

    python benchmarks/against_ref.py --ref 35ce4a6              # fused and text, 16 prompts
    python benchmarks/against_ref.py --ref HEAD~3 --paths text --prompts 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = dict(method="tq", k=10, horizon=20, max_new_tokens=32)
READERS = {"fused": "reward", "text": "reward-bpe"}       # reward-bpe has its own tokenizer


def child(path: str, prompts: int, repeats: int) -> dict:
    """Time TQ* in the tree this process imports tqjax from: the fastest of ``repeats``."""
    import tqjax
    from tqjax.world import EVAL_PROMPT_SEED, sample_prompts

    root = os.path.join(os.path.dirname(tqjax.__file__), "checkpoints", "world")
    load = lambda name: tqjax.load(os.path.join(root, name))  # noqa: E731
    params = tqjax.TQParams(sft=load("sft"), baseline=load("baseline-direct"), reward=load(READERS[path]))
    texts = sample_prompts(prompts, seed=EVAL_PROMPT_SEED)
    config = tqjax.DecodeConfig(**CONFIG)
    out = tqjax.decode(params, texts, config)       # warm-up: every program compiled
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        tqjax.decode(params, texts, config)
        best = min(best, time.perf_counter() - start)
    return dict(seconds=best, tokens=out.tokens, n_tokens=sum(len(t) for t in out.tokens),
                tqjax=os.path.dirname(os.path.abspath(tqjax.__file__)))


def run_tree(tree: str, path: str, prompts: int, repeats: int) -> dict:
    env = dict(os.environ, PYTHONPATH=tree, TRANSFORMERS_VERBOSITY="error")
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "against_ref.py"), "--child", path,
           "--prompts", str(prompts), "--repeats", str(repeats)]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the {path} run in {tree} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["tqjax"] != os.path.join(os.path.abspath(tree), "tqjax"):
        raise RuntimeError(f"the run for {tree} imported tqjax from {result['tqjax']}")
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description="TQ* throughput of this tree against an earlier commit")
    p.add_argument("--ref", help="the earlier commit (any git revision)")
    p.add_argument("--paths", nargs="+", default=["fused", "text"], choices=list(READERS))
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2, help="timed decodes per process")
    p.add_argument("--rounds", type=int, default=2, help="alternations of the two trees")
    p.add_argument("--child", choices=list(READERS), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.prompts, a.repeats)))
        return None
    if not a.ref:
        p.error("--ref is required")
    with tempfile.TemporaryDirectory() as tmp:
        ref_tree = os.path.join(tmp, "ref")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", ref_tree, a.ref],
                       check=True, capture_output=True)
        try:
            trees = {"this": ROOT, a.ref: ref_tree}
            print(f"# TQ* k={CONFIG['k']} H={CONFIG['horizon']} {CONFIG['max_new_tokens']} tokens, "
                  f"{a.prompts} prompts of the shipped task; this tree against {a.ref}; "
                  f"{os.cpu_count()} cores, load {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
            print("| path | this tree s | ref s | this / ref throughput | tokens |")
            print("|---|---:|---:|---:|---|")
            rows = []
            for path in a.paths:
                got = {}
                for round_ in range(a.rounds):      # the order flips each round
                    for name, tree in list(trees.items())[::1 if round_ % 2 == 0 else -1]:
                        r = run_tree(tree, path, a.prompts, a.repeats)
                        if name not in got or r["seconds"] < got[name]["seconds"]:
                            got[name] = r
                this, ref = got["this"], got[a.ref]
                ratio = ref["seconds"] / this["seconds"]
                same = "identical" if this["tokens"] == ref["tokens"] else "DIFFER"
                print(f"| {path} | {this['seconds']:.2f} | {ref['seconds']:.2f} | {ratio:.3f}× | {same} |",
                      flush=True)
                rows.append(dict(path=path, this=this["seconds"], ref=ref["seconds"], ratio=ratio,
                                 same=same == "identical"))
            print(f"load at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
            return rows
        finally:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", ref_tree],
                           capture_output=True)


if __name__ == "__main__":
    main()
