"""KV caches: the committed prefix (one per model) and the private suffix of a rollout."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

Array = jax.Array


@flax.struct.dataclass
class KVCache:
    """Head-major cache of a left-padded batch, stacked over layers.

    ``k``, ``v``: ``[L, B, K, S, H]`` (layer ``l`` is ``k[l]``); ``start_B``: first real slot of
    each row; ``length``: slots filled so far (the same for every row, because rows share a right
    edge); ``read_B``: float32, a reward model's score of the committed sequence as transformers
    reads it (at its rightmost token that is not the pad id; zeros for a language model).
    """

    k: Array
    v: Array
    start_B: Array
    length: Array
    read_B: Array

    @property
    def size(self) -> int:
        return self.k.shape[3]

    def filled_B1S(self) -> Array:
        """``[B, 1, S]``: the slots that hold a real committed token (what a suffix attends to)."""
        s = jnp.arange(self.size)
        return ((s[None] >= self.start_B[:, None]) & (s[None] < self.length))[:, None, :]

    def positions(self, slots: Array) -> Array:
        """Token positions of ``slots`` (``[T]``) for every row: ``[B, T]``."""
        return jnp.maximum(slots[None, :] - self.start_B[:, None], 0)


@flax.struct.dataclass
class Suffix:
    """Private tokens of one rollout per batch row: ``k``, ``v``: ``[L, B, K, U, H]``;
    ``read_B`` as in `KVCache`, for the prefix and the suffix so far."""

    k: Array
    v: Array
    length: Array
    read_B: Array


def empty_cache(n_layers, batch, n_kv_heads, length, head_dim, dtype) -> KVCache:
    zeros = jnp.zeros((n_layers, batch, n_kv_heads, length, head_dim), dtype)
    return KVCache(k=zeros, v=zeros, start_B=jnp.zeros((batch,), jnp.int32),
                   length=jnp.zeros((), jnp.int32), read_B=jnp.zeros((batch,), jnp.float32))


def empty_suffix(cache: KVCache, length: int) -> Suffix:
    L, batch, n_kv_heads, _, head_dim = cache.k.shape
    zeros = jnp.zeros((L, batch, n_kv_heads, length, head_dim), cache.k.dtype)
    return Suffix(k=zeros, v=zeros, length=jnp.zeros((), jnp.int32), read_B=cache.read_B)
