"""Flags shared by the commands: every DecodeConfig field, model folders, the shipped checkpoints."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from pathlib import Path

from tqjax.decoding.config import DecodeConfig

# The embedded task's trained models ship inside the package (package data), so the demo runs
# after a plain `pip install` from any folder.
SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "world"
ROLES = {"sft": "sft", "baseline": "baseline-direct", "reward": "reward", "baseline_reward": None}


class _Checked(argparse.Action):
    """A flag whose value ``check(text)`` converts and checks while the command line is parsed: a
    bad value is an argparse error (exit status 2) that names the flag, never a traceback."""

    def __init__(self, *args, check, **kwargs):
        super().__init__(*args, **kwargs)
        self.check = check

    def __call__(self, parser, namespace, text, option_string=None):
        try:
            value = self.check(text)
        except (TypeError, ValueError) as e:
            parser.error(f"{self.option_strings[0]} {e}")
        setattr(namespace, self.dest, value)


def checked(check) -> dict:
    """``add_argument`` keywords of a flag checked by ``check(text) -> value`` (raising
    ValueError / TypeError with a message that reads after the flag's name)."""
    return dict(action=_Checked, check=check)


def numbers(text: str, kind=float) -> list:
    """The sorted distinct values of a comma-separated list of finite numbers (``int``: each >= 1);
    '' is the empty list. Errors read after a flag's name."""
    import math

    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"must be comma-separated numbers, got {text!r}") from None
    if any(not math.isfinite(v) or (kind is int and v < 1) for v in values):
        raise ValueError(f"must be finite numbers{' >= 1' if kind is int else ''}, got {text!r}")
    return sorted(set(values))


def int_at_least(least: int, note: str = ""):
    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"must be an int, got {text!r}") from None
        if value < least:
            raise ValueError(f"must be >= {least}{note}, got {value}")
        return value
    return check


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"must be > 0, got {text}")
    return value


def dtype_name(text: str) -> str:
    from tqjax.api.checks import check_dtype

    try:
        check_dtype("dtype", text)
    except (TypeError, ValueError) as e:
        raise ValueError(str(e).removeprefix("dtype ")) from None
    return text


def mesh_sizes(text: str) -> str:
    """``DATA,MODEL``: two ints >= 1 (kept as text; `local_mesh` / `job_mesh` build the mesh)."""
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise ValueError(f"must be DATA,MODEL (two ints >= 1), got {text!r}")
    return text


def _config_check(field):
    """Converts a flag's text to ``field``'s type and checks it as `DecodeConfig` does."""
    def check(text: str):
        if str(field.type) == "tuple":
            try:
                value = tuple(int(x) for x in text.split(",") if x.strip())
            except ValueError:
                raise ValueError(f"must be comma-separated token ids, got {text!r}") from None
        else:
            kind = {"int": int, "float": float, "str": str}.get(str(field.type), type(field.default))
            try:
                value = kind(text)
            except ValueError:
                raise ValueError(f"must be {'an int' if kind is int else 'a number'}, got {text!r}") from None
        try:
            DecodeConfig(**{field.name: value})
        except (TypeError, ValueError) as e:
            message = str(e)
            raise ValueError(message[len(field.name) + 1:] if message.startswith(f"{field.name} ")
                             else f"is invalid: {message}") from None
        return value
    return check


def add_decode_flags(p) -> None:
    """One flag per DecodeConfig field, same name (``--max-new-tokens`` or ``--max_new_tokens``)."""
    group = p.add_argument_group("decoding (tqjax.DecodeConfig fields)")
    for field in dataclasses.fields(DecodeConfig):
        flags = sorted({f"--{field.name.replace('_', '-')}", f"--{field.name}"})
        if field.type in (bool, "bool"):
            group.add_argument(*flags, dest=field.name, action="store_true", default=None)
        elif str(field.type) == "tuple":
            group.add_argument(*flags, dest=field.name, default=None, metavar="ID,ID,...",
                               help="comma-separated token ids", **checked(_config_check(field)))
        else:
            group.add_argument(*flags, dest=field.name, default=None,
                               help=f"default {field.default!r}", **checked(_config_check(field)))


def decode_config(args, **defaults) -> DecodeConfig:
    """A validated DecodeConfig from the flags that were given, on top of ``defaults``."""
    values = dict(defaults)
    for field in dataclasses.fields(DecodeConfig):
        if getattr(args, field.name, None) is not None:
            values[field.name] = getattr(args, field.name)
    return DecodeConfig(**values)


def add_model_flags(p) -> None:
    group = p.add_argument_group("models (Hugging Face folders or tqjax checkpoints)")
    group.add_argument("--sft", help="SFT model folder (candidates and the KL reference)")
    group.add_argument("--baseline", help="aligned baseline model folder (e.g. DPO), used for rollouts")
    group.add_argument("--reward", help="target reward model folder")
    group.add_argument("--baseline-reward", "--baseline_reward", dest="baseline_reward",
                       help="reward model the baseline was aligned to (indirect transfer)")
    add_label_flags(group)
    group.add_argument("--dtype", default=None, help="cast weights on load (e.g. bfloat16)",
                       **checked(dtype_name))
    group.add_argument("--checkpoints", default=str(SHIPPED),
                       help="folder of the world-task models used when no model folder is given")


def add_label_flags(group) -> None:
    group.add_argument("--reward-label", "--reward_label", dest="reward_label", type=_label, default=None,
                       metavar="NAME|INDEX", help="the logit of a classifier reward model with several labels "
                                                  "(a name from its id2label, or an index)")
    group.add_argument("--baseline-reward-label", "--baseline_reward_label", dest="baseline_reward_label",
                       type=_label, default=None, metavar="NAME|INDEX", help="the same for --baseline-reward")


def _label(text: str):
    """A label name, or an index when the text is a non-negative integer."""
    return int(text) if text.isdigit() else text


def reward_labels(args) -> dict:
    """Role -> the ``reward_label`` its model loads with (only the flags given)."""
    labels = {"reward": getattr(args, "reward_label", None),
              "baseline_reward": getattr(args, "baseline_reward_label", None)}
    return {role: label for role, label in labels.items() if label is not None}


def model_paths(args) -> dict:
    """Role -> folder: the given flags, or the shipped world checkpoints when none are given."""
    given = {role: getattr(args, role) for role in ROLES if getattr(args, role, None)}
    if given:
        if "sft" not in given:
            raise ValueError("--sft is required when model folders are given")
        return given
    root = Path(getattr(args, "checkpoints", SHIPPED))
    if not root.is_dir():
        raise FileNotFoundError(f"the world checkpoints are not at {root}; pass --sft/--baseline/--reward")
    return {role: str(root / name) for role, name in ROLES.items() if name}


def check_roles(config: DecodeConfig, paths: dict) -> None:
    """Before anything loads: the folders given are the models ``config.method`` needs."""
    from tqjax.decoding.decode_plan import DecodePlan

    try:
        DecodePlan.build(config, paths)
    except ValueError as e:
        flags = ", ".join(f"--{r.replace('_', '-')}" for r in paths)
        raise ValueError(f"{e} (model folders given: {flags})") from None


def load_models(paths: dict, dtype=None, labels: dict | None = None) -> dict:
    """Load every folder first (so a bad one fails before any decoding); ``labels``: role ->
    ``reward_label`` of a classifier reward model."""
    import tqjax

    for role, path in paths.items():
        if not os.path.isdir(path):
            raise FileNotFoundError(f"--{role.replace('_', '-')} folder {path!r} does not exist")
    labels = labels or {}
    return {role: tqjax.load(path, dtype=dtype, reward_label=labels.get(role)) for role, path in paths.items()}


def add_mesh_flag(p) -> None:
    p.add_argument("--mesh", default=None, metavar="DATA,MODEL", **checked(mesh_sizes),
                   help="device mesh: prompts split over DATA, params tensor-parallel over MODEL. "
                        "Over this process's devices, or, in a multi-process `tqjax batch` whose "
                        "DATA×MODEL is every process's devices together, one mesh across hosts "
                        "(batch default: every local device on DATA; decode default: one device)")


def _mesh_sizes(args) -> tuple[int, int]:
    try:
        data, model = (int(x) for x in args.mesh.split(","))
    except ValueError:
        raise ValueError(f"--mesh must be DATA,MODEL (two ints), got {args.mesh!r}") from None
    return data, model


def job_mesh(args):
    """``--mesh`` of a `tqjax batch` process: one global mesh when DATA×MODEL is the number of
    devices of all processes together (and there is more than one process), else `local_mesh`."""
    import jax

    from tqjax.parallel import make_mesh

    if getattr(args, "mesh", None) and jax.process_count() > 1:
        data, model = _mesh_sizes(args)
        if data * model == jax.device_count():
            return make_mesh(data, model, devices=jax.devices())
    return local_mesh(args)


def local_mesh(args):
    """The ("data", "model") mesh of ``--mesh`` over this process's local devices."""
    import jax

    from tqjax.parallel import make_mesh

    devices = jax.local_devices()
    if not getattr(args, "mesh", None):
        return make_mesh(len(devices), 1, devices=devices)
    data, model = _mesh_sizes(args)
    return make_mesh(data, model, devices=devices)
