"""KV caches: the committed prefix (one per model) and the private suffix of a rollout."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

Array = jax.Array


@flax.struct.dataclass
class KVCache:
    """Head-major cache of a left-padded batch, stacked over layers.

    ``k``, ``v``: ``[L, B, K, S, H]`` (layer ``l`` is ``k[l]``), or for a model whose layers run
    unrolled in the decoding loops (`Model.for_loops`) a tuple of ``L`` per-layer ``[B, K, S, H]``
    buffers, which a layer reads in place; ``start_B``: first real slot of
    each row; ``length``: slots filled so far, a scalar when the rows share a right edge (one
    batch), or ``[B]`` per-row write positions once rows have been put in with `insert`
    (continuous batching); ``read_B``: float32, a reward model's score of the committed sequence
    as transformers reads it (at its rightmost token that is not the pad id; zeros for a language
    model).
    """

    k: Array
    v: Array
    start_B: Array
    length: Array
    read_B: Array

    @property
    def size(self) -> int:
        return jax.tree.leaves(self.k)[0].shape[-2]

    def filled_B1S(self) -> Array:
        """``[B, 1, S]``: the slots that hold a real committed token (what a suffix attends to)."""
        s = jnp.arange(self.size)
        return ((s[None] >= self.start_B[:, None]) & (s[None] < edge(self.length)))[:, None, :]

    def positions(self, slots: Array) -> Array:
        """Token positions of ``slots`` (``[T]``) for every row: ``[B, T]``."""
        return jnp.maximum(slots[None, :] - self.start_B[:, None], 0)

    def insert(self, rows: "KVCache", slots_R: Array) -> "KVCache":
        """This cache with row ``slots_R[r]`` replaced by row ``r`` of ``rows`` (prefilled with the
        same number of slots); a slot index ``>= B`` is skipped. The result has per-row write
        positions (``length`` ``[B]``)."""
        return KVCache(k=_put_rows(self.k, rows.k, slots_R), v=_put_rows(self.v, rows.v, slots_R),
                       start_B=self.start_B.at[slots_R].set(rows.start_B, mode="drop"),
                       length=insert_rows(self.length, rows.length, self.start_B.shape, slots_R),
                       read_B=self.read_B.at[slots_R].set(rows.read_B, mode="drop"))


@flax.struct.dataclass
class Suffix:
    """Private tokens of one rollout per batch row: ``k``, ``v``: ``[L, B, K, U, H]`` (or per-layer
    buffers, as in `KVCache`);
    ``read_B`` as in `KVCache`, for the prefix and the suffix so far."""

    k: Array
    v: Array
    length: Array
    read_B: Array


def _put_rows(kv, rows, slots_R: Array):
    """Stacked ``[L, B, ...]`` or per-layer ``[B, ...]`` buffers with rows ``slots_R`` replaced."""
    if isinstance(kv, tuple):
        return tuple(x.at[slots_R].set(r, mode="drop") for x, r in zip(kv, rows))
    return kv.at[:, slots_R].set(rows, mode="drop")


def edge(length: Array) -> Array:
    """``length`` as it broadcasts against ``[B, S]`` slots: the shared edge, or ``[B, 1]``."""
    return length if length.ndim == 0 else length[:, None]


def insert_rows(length: Array, rows: Array, shape: tuple, slots_R: Array) -> Array:
    """Per-row write positions ``[B]``: ``length`` (scalar or ``[B]``) with ``rows``' lengths
    (scalar or ``[R]``) put in at ``slots_R`` (indices ``>= B`` skipped)."""
    length_B = jnp.broadcast_to(length, shape).astype(jnp.int32)
    return length_B.at[slots_R].set(jnp.broadcast_to(rows, slots_R.shape).astype(jnp.int32), mode="drop")


def _zeros(n_layers, shape, dtype, per_layer: bool):
    if per_layer:
        return tuple(jnp.zeros(shape, dtype) for _ in range(n_layers))
    return jnp.zeros((n_layers,) + shape, dtype)


def empty_cache(n_layers, batch, n_kv_heads, length, head_dim, dtype, per_layer: bool = False) -> KVCache:
    """An empty cache, stacked ``[L, ...]`` or (``per_layer``) a tuple of per-layer buffers."""
    zeros = _zeros(n_layers, (batch, n_kv_heads, length, head_dim), dtype, per_layer)
    return KVCache(k=zeros, v=zeros, start_B=jnp.zeros((batch,), jnp.int32),
                   length=jnp.zeros((), jnp.int32), read_B=jnp.zeros((batch,), jnp.float32))


def empty_suffix(cache: KVCache, length: int) -> Suffix:
    per_layer = isinstance(cache.k, tuple)
    L = len(cache.k) if per_layer else cache.k.shape[0]
    batch, n_kv_heads, _, head_dim = jax.tree.leaves(cache.k)[0].shape[-4:]
    zeros = _zeros(L, (batch, n_kv_heads, length, head_dim), jax.tree.leaves(cache.k)[0].dtype, per_layer)
    return Suffix(k=zeros, v=zeros, length=jnp.zeros((), jnp.int32), read_B=cache.read_B)
