"""The small model protocol the decoding engine is written against (docs/design.md, "The model
protocol").

The engine never imports a concrete architecture. Anything that is a JAX pytree and has these
members can be decoded: the Flax transformer (`tqjax.models.Model`) and the enumerable toy used to
check the engine against closed-form answers (`tqjax.models.toy`).

Layout conventions (shared by every implementation):

- Prompts are **left-padded**. Row ``b`` of a ``[B, T]`` prefill has its first real token at slot
  ``start_B[b]``; slots before it are padding and are never attended to. Because every row is
  padded to the same right edge, ``append`` writes all rows at one shared slot, ``cache.length``.
- Continuous batching puts freshly prefilled rows into a running batch with ``insert``; from then
  on the cache has **per-row write positions** (``cache.length`` ``[B]``), every row its own right
  edge, and ``append``, ``extend`` and ``forward_suffix`` read and write each row at its own. A
  row whose position runs past the cache (a finished row waiting for its next prompt) writes
  nothing.
- ``out`` is what the model's head reads at the position just processed: float32 next-token
  logits ``[..., V]`` for ``kind == "lm"``, or a float32 score ``[...]`` for ``kind == "reward"``
  (the reward of the sequence ending at that token, read where the reward model itself reads a
  sequence: for a transformers ``*ForSequenceClassification``, its rightmost non-pad token).
- A *suffix* is the private continuation of one rollout per batch row. ``extend`` processes one
  token of it, attending to the shared committed prefix in ``cache`` (read, never copied) and to
  the suffix's own earlier tokens. The engine ``vmap``s ``extend`` over candidates and rollouts
  with the cache unmapped (``in_axes=None``), so the prefix is shared by all of them.
  ``forward_suffix`` reads a finished suffix in one pass (the same outputs as ``U`` extends): the
  rollout model must propose its tokens one at a time, but the models that only read them (the
  reward model, and π_sft for the implicit r_BL) take the whole rollout as one block.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax

Array = jax.Array


class DecodeModel(Protocol):
    kind: str            # "lm" or "reward"
    vocab_size: int
    max_length: int      # context length (positions)
    stop_token_ids: tuple[int, ...]   # ids that end a sequence (may be empty)

    def init_cache(self, batch: int, length: int) -> Any:
        """An empty committed-sequence cache for ``batch`` rows and ``length`` slots."""

    def prefill(self, tokens_BT: Array, start_B: Array, cache: Any) -> tuple[Array, Any]:
        """Process left-padded prompts into slots ``[0, T)``; ``out`` at slot ``T-1``."""

    def append(self, tokens_B: Array, cache: Any) -> tuple[Array, Any]:
        """Commit one token per row at slot ``cache.length``; ``out`` at that token."""

    def insert(self, cache: Any, rows: Any, slots_R: Array) -> Any:
        """``cache`` with row ``slots_R[r]`` replaced by row ``r`` of ``rows``, a cache prefilled
        with as many slots; indices ``>= B`` are skipped. The result has per-row positions."""

    def init_suffix(self, cache: Any, length: int) -> Any:
        """An empty private suffix of ``length`` tokens per batch row, on top of ``cache``."""

    def extend(self, tokens_B: Array, cache: Any, suffix: Any) -> tuple[Array, Any]:
        """Process one suffix token per row against ``cache`` (shared) and ``suffix``."""

    def forward_suffix(self, tokens_BU: Array, cache: Any) -> Array:
        """``out`` at every token of a whole suffix ``[B, U]`` read at once against ``cache``."""


def for_loops(model, layers: str = "auto", one_device: bool = True):
    """``model`` as the engine's loops hold it for the layer layout ``layers``
    (`DecodeConfig.layers`): its optional ``for_loops(layers, one_device)`` (done once, outside the
    loops: e.g. per-layer weights split out of a stacked array), else the model itself."""
    prepare = getattr(model, "for_loops", None)
    return model if prepare is None else prepare(layers, one_device)


MEMBERS = ("kind", "vocab_size", "max_length", "stop_token_ids", "init_cache", "prefill", "append",
           "insert", "init_suffix", "extend", "forward_suffix")


def check_protocol(model, name: str = "model") -> None:
    """Raise TypeError naming what ``model`` lacks of `DecodeModel` (or has of the wrong type)."""
    missing = [m for m in MEMBERS if not hasattr(model, m)]
    if missing:
        raise TypeError(f"{name} ({type(model).__name__}) does not implement the decoding model "
                        f"protocol: missing {', '.join(missing)}")
    if model.kind not in ("lm", "reward"):
        raise TypeError(f"{name}.kind must be 'lm' or 'reward', got {model.kind!r}")
    stops = model.stop_token_ids
    if not isinstance(stops, tuple) or not all(isinstance(i, int) and not isinstance(i, bool)
                                               for i in stops):
        raise TypeError(f"{name}.stop_token_ids must be a tuple of ints (empty: no stop id), "
                        f"got {stops!r}")


def register_model(cls):
    """Register a frozen dataclass model as a pytree (a class decorator).

    Fields with ``metadata={"static": True}`` are static (part of the tree structure, so of a jit
    key), the other fields are leaves, and a ``tokenizer`` field is neither: flattening drops it,
    so a host-side tokenizer never becomes part of a jit cache key (a model rebuilt from its
    leaves inside a transformation has ``tokenizer=None``).
    """
    fields = [f.name for f in dataclasses.fields(cls) if f.name != "tokenizer"]
    static = [f.name for f in dataclasses.fields(cls) if f.metadata.get("static") and f.name != "tokenizer"]
    leaves = [name for name in fields if name not in static]

    def flatten_with_keys(model):
        children = [(jax.tree_util.GetAttrKey(name), getattr(model, name)) for name in leaves]
        return children, tuple(getattr(model, name) for name in static)

    def flatten(model):
        return [getattr(model, name) for name in leaves], tuple(getattr(model, name) for name in static)

    def unflatten(aux, children):
        return cls(**dict(zip(leaves, children)), **dict(zip(static, aux)))

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    return cls
