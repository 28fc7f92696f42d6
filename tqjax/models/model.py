"""`Model`: parameters + static config, implementing the engine's model protocol."""

from __future__ import annotations

from typing import Any

import dataclasses

import jax
import jax.numpy as jnp

from tqjax.models import transformer
from tqjax.models.cache import KVCache, Suffix, edge, empty_cache, empty_suffix
from tqjax.models.config import ModelConfig
from tqjax.models.layers import attend, norm
from tqjax.models.protocol import register_model

Array = jax.Array


@register_model
@dataclasses.dataclass(frozen=True)
class Model:
    """A loaded or initialised decoder. A pytree: ``params`` are its leaves, ``config`` is static.

    The ``tokenizer`` is host-side only and not part of the tree: flattening drops it, so a
    tokenizer can never become part of a jit cache key (a model rebuilt from its leaves inside a
    transformation has ``tokenizer=None``).

    ``kind`` is ``"lm"`` (heads give next-token logits ``[..., V]``) or ``"reward"`` (a scalar
    score per position). A reward model's protocol outputs are already *read* the way
    transformers' ``*ForSequenceClassification`` reads a sequence: the output at a token is the
    raw score at the rightmost token up to it that is not ``config.pad_token_id`` (`read_index`),
    so a sequence that ends in pad ids (a generated token equal to the pad id, or an EOS when
    pad == EOS) is scored where transformers scores it.
    """

    params: dict
    config: ModelConfig = dataclasses.field(metadata=dict(static=True))
    tokenizer: Any = dataclasses.field(default=None, compare=False)

    def replace(self, **changes) -> "Model":
        return dataclasses.replace(self, **changes)

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def max_length(self) -> int:
        return self.config.max_positions

    @property
    def stop_token_ids(self) -> tuple[int, ...]:
        return self.config.eos_token_id

    def _read(self, raw, tokens, prev_B):
        """Protocol output and new ``read_B`` for one token per row: for a reward model the raw
        score unless the token is the pad id, then the score read before it."""
        pad = self.config.pad_token_id
        if self.kind != "reward":
            return raw, prev_B
        out_B = raw if pad is None else jnp.where(tokens != pad, raw, prev_B)
        return out_B, out_B

    @property
    def dtype(self):
        return self.params["embed_VD"].dtype

    def for_loops(self, layers: str = "auto", one_device: bool = True) -> "Model":
        """This model as the decoding loops should hold it (`protocol.for_loops`) for the layer
        layout ``layers`` (`DecodeConfig.layers`, `transformer.runs_unrolled`): unrolled, each
        layer's weights split out once (`transformer.split_layers`) so that the loops read them in
        place; scanned, unchanged (one scan over the stacked layers)."""
        if isinstance(self.params["layers"], tuple) or not transformer.runs_unrolled(
                layers, self.config.n_layers, one_device):
            return self
        return self.replace(params=transformer.split_layers(self.params))

    # -- full forward (no cache) ---------------------------------------------------------------

    def hidden_states(self, tokens_BT: Array) -> Array:
        """Final-normed hidden states ``[B, T, D]`` of unpadded / right-padded ``tokens_BT``."""
        pos_BT = jnp.broadcast_to(jnp.arange(tokens_BT.shape[1]), tokens_BT.shape)
        x_BTD = transformer.embed(self.config, self.params, tokens_BT, pos_BT)
        return norm(self.config, self.params["final_norm"],
                                causal_blocks(self.config, self.params["layers"], x_BTD))

    def forward(self, tokens_BT: Array) -> Array:
        """Head output at every position of unpadded / right-padded ``tokens_BT``."""
        return transformer.head(self.config, self.params, self.hidden_states(tokens_BT))

    # -- the decoding protocol (tqjax.models.protocol) -------------------------------------------

    def init_cache(self, batch: int, length: int) -> KVCache:
        c = self.config
        return empty_cache(c.n_layers, batch, c.n_kv_heads, length, c.head_dim, self.dtype,
                           per_layer=isinstance(self.params["layers"], tuple))

    def prefill(self, tokens_BT: Array, start_B: Array, cache: KVCache) -> tuple[Array, KVCache]:
        """Left-padded prompts into slots ``[0, T)``; head output at the last slot."""
        B, T = tokens_BT.shape
        start_B = start_B.astype(jnp.int32)
        slots = jnp.arange(T)
        pos_BT = jnp.maximum(slots[None] - start_B[:, None], 0)
        mask_BTS = (slots[None, None, :] >= start_B[:, None, None]) & (slots[None, None, :] <= slots[None, :, None])

        def attn(layer, kv, q, k, v, scores):
            k_BKTH, v_BKTH = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
            kv = _write(kv, layer, 0, k_BKTH, v_BKTH)
            return attend(q, [(k_BKTH, v_BKTH, mask_BTS, pos_BT)], scores), kv

        h, (ks, vs) = transformer.hidden(self.config, self.params, tokens_BT, pos_BT, attn, (cache.k, cache.v))
        if self.kind == "reward":
            scores_BT = transformer.head(self.config, self.params, h)
            idx_B = read_index(tokens_BT, start_B, self.config.pad_token_id)[:, -1]
            out = read_B = jnp.take_along_axis(scores_BT, idx_B[:, None], axis=1)[:, 0]
        else:
            out = transformer.head(self.config, self.params, h[:, -1:])[:, 0]
            read_B = cache.read_B
        return out, KVCache(k=ks, v=vs, start_B=start_B,
                            length=jnp.asarray(T, jnp.int32), read_B=read_B)

    def append(self, tokens_B: Array, cache: KVCache) -> tuple[Array, KVCache]:
        """Commit one token per row at slot ``cache.length`` (shared, or per row)."""
        slot = cache.length
        pos_B1 = (slot - cache.start_B)[:, None]
        s = jnp.arange(cache.size)
        mask_B1S = ((s[None] >= cache.start_B[:, None]) & (s[None] <= edge(slot)))[:, None, :]
        k_pos_BS = cache.positions(s)

        def attn(layer, kv, q, k, v, scores):
            kv = _write(kv, layer, slot, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3))
            return attend(q, [_layer(kv, layer) + (mask_B1S, k_pos_BS)], scores), kv

        h, (ks, vs) = transformer.hidden(self.config, self.params, tokens_B[:, None], pos_B1, attn, (cache.k, cache.v))
        out, read_B = self._read(transformer.head(self.config, self.params, h)[:, 0], tokens_B, cache.read_B)
        return out, cache.replace(k=ks, v=vs, length=slot + 1, read_B=read_B)

    def insert(self, cache: KVCache, rows: KVCache, slots_R: Array) -> KVCache:
        """``cache`` with rows ``slots_R`` replaced by the prefilled ``rows`` (`KVCache.insert`)."""
        return cache.insert(rows, slots_R)

    def init_suffix(self, cache: KVCache, length: int) -> Suffix:
        return empty_suffix(cache, length)

    def extend(self, tokens_B: Array, cache: KVCache, suffix: Suffix) -> tuple[Array, Suffix]:
        """One private suffix token per row, attending to the shared prefix and its own suffix."""
        u = suffix.length
        pos_B1 = (cache.length - cache.start_B + u)[:, None]
        prefix_B1S = cache.filled_B1S()
        own_11U = (jnp.arange(jax.tree.leaves(suffix.k)[0].shape[-2]) <= u)[None, None, :]
        own_B1U = jnp.broadcast_to(own_11U, (tokens_B.shape[0], 1, own_11U.shape[-1]))
        prefix = (cache.k, cache.v)
        prefix_pos_BS = cache.positions(jnp.arange(cache.size))
        own_pos_BU = (cache.length - cache.start_B)[:, None] + jnp.arange(own_B1U.shape[-1])[None, :]

        def attn(layer, kv, q, k, v, scores):
            kv = _write(kv, layer, u, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3))
            return attend(q, [_layer(prefix, layer) + (prefix_B1S, prefix_pos_BS),
                              _layer(kv, layer) + (own_B1U, own_pos_BU)], scores), kv

        h, (ks, vs) = transformer.hidden(self.config, self.params, tokens_B[:, None], pos_B1, attn, (suffix.k, suffix.v))
        out, read_B = self._read(transformer.head(self.config, self.params, h)[:, 0], tokens_B, suffix.read_B)
        return out, Suffix(k=ks, v=vs, length=u + 1, read_B=read_B)

    def forward_suffix(self, tokens_BU: Array, cache: KVCache) -> Array:
        """Head output at every token of a whole suffix ``[B, U]`` at once (causal within it).

        The same numbers as ``U`` calls of `extend`, in one pass: ``U`` times larger matmuls, and
        no suffix cache is kept. For a model that only reads a finished rollout (the reward model).
        """
        B, U = tokens_BU.shape
        pos_BU = (cache.length - cache.start_B)[:, None] + jnp.arange(U)[None, :]
        prefix_B1S = cache.filled_B1S()
        causal_BUU = jnp.broadcast_to(jnp.tril(jnp.ones((U, U), bool)), (B, U, U))
        prefix = (cache.k, cache.v)
        prefix_pos_BS = cache.positions(jnp.arange(cache.size))

        def attn(layer, state, q, k, v, scores):
            own = (k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3), causal_BUU, pos_BU)
            return attend(q, [_layer(prefix, layer) + (prefix_B1S, prefix_pos_BS), own], scores), state

        h, _ = transformer.hidden(self.config, self.params, tokens_BU, pos_BU, attn)
        out_BU = transformer.head(self.config, self.params, h)
        pad = self.config.pad_token_id
        if self.kind != "reward" or pad is None:
            return out_BU
        idx_BU = jax.lax.cummax(jnp.where(tokens_BU != pad, jnp.arange(U)[None], -1), axis=1)
        read_BU = jnp.take_along_axis(out_BU, jnp.maximum(idx_BU, 0), axis=1)
        return jnp.where(idx_BU >= 0, read_BU, cache.read_B[:, None])


def causal_blocks(config: ModelConfig, layers, x_BTD: Array, first: int = 0) -> Array:
    """The full forward's blocks ``first, first + 1, ...`` (parameters ``layers``, stacked or split,
    see `transformer.blocks`) over the residual stream ``x_BTD`` of unpadded / right-padded rows:
    positions ``0..T-1``, causal attention. Returns the residual stream ``[B, T, D]``, not normed.

    Running blocks ``[0, k)`` and then ``[k, L)`` on the result gives the same stream as running
    all ``L`` at once, so training the top blocks can start from stored features.
    """
    B, T = x_BTD.shape[:2]
    pos_BT = jnp.broadcast_to(jnp.arange(T), (B, T))
    causal_BTS = jnp.broadcast_to(jnp.tril(jnp.ones((T, T), bool)), (B, T, T))

    def attn(layer, state, q, k, v, scores):
        return attend(q, [(k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3), causal_BTS, pos_BT)], scores), state

    return transformer.blocks(config, layers, x_BTD, pos_BT, attn, first=first)[0]


def _layer(kv, layer) -> tuple[Array, Array]:
    """Layer ``layer``'s ``[B, K, S, H]`` keys and values of a ``(k, v)`` pair, stacked or per
    layer (then ``layer`` is a Python int and the buffer is read in place)."""
    if isinstance(kv[0], tuple):
        return tuple(x[layer] for x in kv)
    return tuple(jax.lax.dynamic_index_in_dim(x, layer, keepdims=False) for x in kv)


def _write(kv, layer, slot, k_BKTH: Array, v_BKTH: Array) -> tuple[Array, Array]:
    """``(k, v)`` stacked ``[L, B, K, S, H]`` with layer ``layer``'s slots from ``slot`` on written.

    ``slot`` is shared (a scalar) or per row (``[B]``, one token each; a slot past the end is
    skipped: a finished row waiting for its next prompt)."""
    if isinstance(kv[0], tuple):          # per-layer buffers: only layer ``layer``'s changes
        return tuple(x[:layer] + (_write_layer(x[layer], slot, new),) + x[layer + 1:]
                     for x, new in zip(kv, (k_BKTH, v_BKTH)))
    if jnp.ndim(slot):
        rows = jnp.arange(slot.shape[0])
        return tuple(x.at[layer, rows, :, slot].set(new[:, :, 0].astype(x.dtype), mode="drop")
                     for x, new in zip(kv, (k_BKTH, v_BKTH)))
    return tuple(jax.lax.dynamic_update_slice(x, new[None].astype(x.dtype), (layer, 0, 0, slot, 0))
                 for x, new in zip(kv, (k_BKTH, v_BKTH)))


def _write_layer(x_BKSH: Array, slot, new_BKTH: Array) -> Array:
    """One layer's buffer with slots from ``slot`` (shared, or ``[B]`` one token per row) written."""
    if jnp.ndim(slot):
        rows = jnp.arange(slot.shape[0])
        return x_BKSH.at[rows, :, slot].set(new_BKTH[:, :, 0].astype(x_BKSH.dtype), mode="drop")
    return jax.lax.dynamic_update_slice(x_BKSH, new_BKTH.astype(x_BKSH.dtype), (0, 0, slot, 0))


def read_index(tokens_BT: Array, first_B: Array, pad_id: int | None) -> Array:
    """``[B, T]`` int32: where transformers reads the score of the sequence ending at each slot.

    That is the rightmost slot ``s`` in ``[first_B, t]`` whose token is not ``pad_id`` (every real
    token when ``pad_id`` is None), or ``first_B`` when there is none: transformers takes
    ``argmax(index · (ids != pad))``, which is 0, the first token, for an all-pad sequence.
    """
    t_T = jnp.arange(tokens_BT.shape[1])
    real_BT = t_T[None] >= first_B[:, None]
    if pad_id is not None:
        real_BT = real_BT & (tokens_BT != pad_id)
    idx_BT = jax.lax.cummax(jnp.where(real_BT, t_T[None], -1), axis=1)
    return jnp.where(idx_BT >= 0, idx_BT, first_B[:, None]).astype(jnp.int32)


def init_model(config: ModelConfig, key: Array, dtype=jnp.float32, tokenizer=None) -> Model:
    """A randomly initialised model (``N(0, 0.02)`` weights)."""
    return Model(params=transformer.init_params(config, key, dtype), config=config, tokenizer=tokenizer)
