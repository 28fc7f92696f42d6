"""The door of the public API: every argument of `tqjax.decode`, `load`, `save`, `logits`,
`reward` and `TQParams` is checked here before any model is placed or any program compiled.

Each error names the argument, what was expected and what was given: ``TypeError`` for a value of
the wrong type (``None`` where a value is required included), ``ValueError`` for a value of the
right type that is out of range or of the wrong shape. `DecodeConfig` checks its fields in its own
``__post_init__`` and `tqjax.make_mesh` its axes (they live below this layer);
tests/api/test_contract.py holds one row per (entry point, argument, bad value) and fails when a
public argument has none.
"""

from __future__ import annotations

import inspect
import os
from typing import Sequence

import jax
import numpy as np

from tqjax.decoding.decode_plan import ROLE_KINDS
from tqjax.models.protocol import check_protocol

MESH_AXES = ("data", "model")
MAX_INDEX = 2 ** 32           # per-prompt keys fold in the index as a uint32


def given(value) -> str:
    """What was given, for an error message: its type and a short repr."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def check_instance(name: str, value, cls, what: str) -> None:
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be {what}, got {given(value)}")


def check_int(name: str, value, least: int, rule: str | None = None) -> None:
    """An int (a NumPy integer too, never a bool) ``>= least``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {given(value)}")
    if value < least:
        raise ValueError(f"{name} must be {rule or f'>= {least}'}, got {value}")


def check_bool(name: str, value) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {given(value)}")


def check_path(name: str, value) -> None:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {given(value)}")
    if not os.fspath(value):
        raise ValueError(f"{name} must be a non-empty path, got {value!r}")


def check_callable(name: str, fn, args: Sequence[str]) -> None:
    """``fn`` is callable with the positional arguments ``args`` (checked with
    `inspect.signature`; a builtin without a signature is taken on trust)."""
    shown = f"({', '.join(args)})"
    if not callable(fn):
        raise TypeError(f"{name} must be a function {shown}, got {given(fn)}")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*args)
    except TypeError:
        raise TypeError(f"{name} must be a function {shown} taking {len(args)} positional "
                        f"arguments, got {getattr(fn, '__name__', type(fn).__name__)}"
                        f"{signature}") from None


def check_mesh(name: str, mesh) -> None:
    """None, or a `jax.sharding.Mesh` whose axes are among ("data", "model")."""
    if mesh is None:
        return
    if not isinstance(mesh, jax.sharding.Mesh):
        raise TypeError(f"{name} must be a jax.sharding.Mesh with axes {MESH_AXES} (e.g. "
                        f"tqjax.make_mesh(data, model)), got {given(mesh)}")
    other = [a for a in mesh.axis_names if a not in MESH_AXES]
    if other:
        raise ValueError(f"{name} axes must be among {MESH_AXES} (tqjax.make_mesh), got "
                         f"{tuple(mesh.axis_names)}")


def check_dtype(name: str, dtype) -> None:
    """None (keep the stored dtype) or a floating dtype (``"bfloat16"``, ``jnp.float32``)."""
    if dtype is None:
        return
    try:
        kind = np.dtype(jax.numpy.dtype(dtype))
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a floating dtype such as 'bfloat16' or jnp.float32 "
                        f"(None: keep the stored dtype), got {given(dtype)}") from None
    if not jax.numpy.issubdtype(kind, jax.numpy.floating):
        raise ValueError(f"{name} must be a floating dtype (the weights are cast to it), got {kind}")


# -- models ---------------------------------------------------------------------------------------

def check_params(params) -> None:
    """The models of a `TQParams`: ``sft`` required; each given model implements the decoding
    protocol (`tqjax.models.protocol`) and is of its role's kind."""
    if params.sft is None:
        raise TypeError("TQParams.sft is required: a language model (tqjax.load(...)), got None")
    for role, kind in ROLE_KINDS.items():
        model = getattr(params, role)
        if model is None:
            continue
        check_protocol(model, f"TQParams.{role}")
        if model.kind != kind:
            raise ValueError(f"TQParams.{role} must be a kind={kind!r} model, got kind={model.kind!r}")


def check_model(name: str, model, kind: str | None = None) -> None:
    """A `tqjax.Model` (of ``kind`` when given)."""
    from tqjax.models import Model

    check_instance(name, model, Model, "a tqjax.Model (tqjax.load or tqjax.init_model)")
    if kind is not None and model.kind != kind:
        use = "; use reward()" if kind == "lm" else ""
        what = "language" if kind == "lm" else "reward"
        raise ValueError(f"{name} must be a {what} model (kind={kind!r}), got a {model.kind!r} "
                         f"model{use}")


def check_load(path, dtype, shardings, mesh, reward_label=None) -> None:
    check_path("path", path)
    check_dtype("dtype", dtype)
    if reward_label is not None:
        if isinstance(reward_label, bool) or not isinstance(reward_label, (str, int)):
            raise TypeError(f"reward_label must be a label name (str) or an index (int), got {given(reward_label)}")
        if reward_label == "" or (isinstance(reward_label, int) and reward_label < 0):
            raise ValueError(f"reward_label must be a non-empty name or an index >= 0, got {reward_label!r}")
    if shardings is not None:
        leaves = jax.tree.leaves(shardings)
        if not leaves or not all(isinstance(s, jax.sharding.Sharding) for s in leaves):
            raise TypeError(f"shardings must be a pytree of jax.sharding.Sharding shaped like the "
                            f"params, got {given(shardings)}")
    check_mesh("mesh", mesh)
    if mesh is not None and shardings is not None:
        raise ValueError("pass shardings or mesh, not both (mesh places the params by the "
                         "sharding rules, shardings places them explicitly)")


def check_save(model, path, overwrite) -> None:
    check_model("model", model)
    check_path("path", path)
    check_bool("overwrite", overwrite)


def check_tokens(model, tokens_BT) -> np.ndarray:
    """``tokens_BT``: a ``[B, T]`` integer array (B, T >= 1) of ids in the model's vocabulary
    that fits its context."""
    if tokens_BT is None or isinstance(tokens_BT, (str, bytes)):
        raise TypeError(f"tokens_BT must be a [B, T] integer array, got {given(tokens_BT)}")
    tokens = np.asarray(tokens_BT)
    if tokens.size and not np.issubdtype(tokens.dtype, np.integer):
        raise TypeError(f"tokens_BT must be a [B, T] integer array, got dtype {tokens.dtype}")
    if tokens.ndim != 2 or 0 in tokens.shape:
        raise ValueError(f"tokens_BT must be a [B, T] integer array with B, T >= 1, got shape "
                         f"{tokens.shape}")
    if tokens.min() < 0 or tokens.max() >= model.vocab_size:
        raise ValueError(f"tokens_BT ids must lie in [0, {model.vocab_size}), got range "
                         f"[{tokens.min()}, {tokens.max()}]")
    if tokens.shape[1] > model.max_length:
        raise ValueError(f"tokens_BT: sequence length {tokens.shape[1]} exceeds the model's "
                         f"context of {model.max_length}")
    return tokens.astype(np.int32)


def check_lengths(lengths_B, tokens_BT: np.ndarray) -> np.ndarray:
    """``lengths_B``: ``[B]`` ints in ``[1, T]`` (row ``b`` is ``tokens_BT[b, :lengths_B[b]]``)."""
    B, T = tokens_BT.shape
    if lengths_B is None or isinstance(lengths_B, (str, bytes)):
        raise TypeError(f"lengths_B must be a [B] integer array, got {given(lengths_B)}")
    lengths = np.asarray(lengths_B)
    if lengths.size and not np.issubdtype(lengths.dtype, np.integer):
        raise TypeError(f"lengths_B must be a [B] integer array, got dtype {lengths.dtype}")
    if lengths.shape != (B,) or lengths.min() < 1 or lengths.max() > T:
        raise ValueError(f"lengths_B must have shape ({B},) with values in [1, {T}], got "
                         f"{lengths.tolist()}")
    return lengths.astype(np.int32)


# -- decode ---------------------------------------------------------------------------------------

def check_prompts(prompts) -> None:
    """A non-empty list of prompts (each prompt is checked as it is tokenised)."""
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, (Sequence, np.ndarray)):
        raise TypeError(f"prompts must be a list of strings, token-id lists or chat message "
                        f"lists, got {given(prompts)}")
    if len(prompts) == 0:
        raise ValueError("prompts is empty")


def check_indices(indices, n_prompts: int) -> None:
    """None, or one int in ``[0, 2**32)`` per prompt."""
    if indices is None:
        return
    if isinstance(indices, (str, bytes)) or not isinstance(indices, (Sequence, np.ndarray)):
        raise TypeError(f"indices must be a sequence of ints (one per prompt), got {given(indices)}")
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"indices must hold ints, got {given(i)}")
        if not 0 <= i < MAX_INDEX:
            raise ValueError(f"indices must lie in [0, 2**32), got {i}")
    if len(indices) != n_prompts:
        raise ValueError(f"indices has {len(indices)} entries for {n_prompts} prompts")


def check_decode(prompts, batch_size, indices, mesh, chunk, on_done, on_error, stats) -> None:
    """The arguments of `tqjax.decode` besides params and config (see its docstring)."""
    from tqjax.decoding.continuous import Stats

    check_prompts(prompts)
    if batch_size is not None:
        check_int("batch_size", batch_size, 0, ">= 0 (0: the largest the memory planner fits)")
    check_indices(indices, len(prompts))
    check_mesh("mesh", mesh)
    if chunk is not None:
        check_int("chunk", chunk, 1)
    if on_done is not None:
        check_callable("on_done", on_done, ("i", "output"))
    if on_error is not None:
        check_callable("on_error", on_error, ("i", "error"))
    if stats is not None:
        check_instance("stats", stats, Stats, "a tqjax.decoding.continuous.Stats")
    for name, value in (("chunk", chunk), ("on_done", on_done), ("on_error", on_error),
                        ("stats", stats)):
        if value is not None and batch_size is None:
            raise ValueError(f"{name} needs batch_size: without it the prompts are one batch "
                             f"(a prompt that fails stops the decode)")
