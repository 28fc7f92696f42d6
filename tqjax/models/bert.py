"""BERT-family sentence encoder (SimCSE, sentence-transformers' MiniLM): bidirectional, post-LN, pooled.

An encoder, not a decoder: no KV cache, no decoding protocol, never a decoding model. It serves the
coherence metric of `tqjax eval` (cosine of the prompt's and the response's embeddings).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from tqjax.models.layers import NEG_INF, activate

Array = jax.Array
POOLINGS = ("cls", "pooler", "mean")
ACTIVATIONS = ("gelu", "gelu_new", "relu", "silu")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Static description of a BERT encoder (transformers' ``BertModel``).

    ``pooler``: whether the params hold the pooler layer (``tanh(W·h_CLS + b)``, transformers'
    ``pooler_output``; supervised SimCSE trained it as its projection head).
    """

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    mlp_dim: int
    max_positions: int
    type_vocab_size: int = 2
    norm_eps: float = 1e-12
    activation: str = "gelu"
    pooler: bool = True

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "mlp_dim", "max_positions", "type_vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be > 0, got {self.norm_eps!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


def param_shapes(cfg: BertConfig) -> dict:
    """The parameter tree's shapes (our names; the importer maps Hugging Face names onto them)."""
    D, N, H, F = cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.mlp_dim
    norm = dict(scale=(D,), bias=(D,))
    layer = dict(q_DNH=(D, N, H), q_NH=(N, H), k_DNH=(D, N, H), k_NH=(N, H), v_DNH=(D, N, H), v_NH=(N, H),
                 o_NHD=(N, H, D), o_D=(D,), attn_norm=norm, up_DF=(D, F), up_F=(F,), down_FD=(F, D), down_D=(D,),
                 mlp_norm=norm)
    shapes = dict(embed_VD=(cfg.vocab_size, D), pos_PD=(cfg.max_positions, D), type_YD=(cfg.type_vocab_size, D),
                  embed_norm=norm, layers=[layer] * cfg.n_layers)
    if cfg.pooler:
        shapes.update(pooler_DD=(D, D), pooler_D=(D,))
    return shapes


def _layer_norm(p: dict, x: Array, eps: float) -> Array:
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]


def encode(cfg: BertConfig, params: dict, tokens_BT: Array, mask_BT: Array) -> Array:
    """Last hidden states ``[B, T, D]`` (float32) of right-padded ``tokens_BT``; ``mask_BT`` marks real tokens.

    Token type 0 everywhere (one segment per text), absolute positions from 0.
    """
    T = tokens_BT.shape[1]
    p = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    x_BTD = p["embed_VD"][tokens_BT] + p["pos_PD"][:T][None] + p["type_YD"][0]
    x_BTD = _layer_norm(p["embed_norm"], x_BTD, cfg.norm_eps)
    keep_B11S = mask_BT.astype(bool)[:, None, None, :]
    scale = 1.0 / math.sqrt(cfg.head_dim)
    for layer in p["layers"]:
        q_BTNH = jnp.einsum("BTD,DNH->BTNH", x_BTD, layer["q_DNH"]) + layer["q_NH"]
        k_BSNH = jnp.einsum("BSD,DNH->BSNH", x_BTD, layer["k_DNH"]) + layer["k_NH"]
        v_BSNH = jnp.einsum("BSD,DNH->BSNH", x_BTD, layer["v_DNH"]) + layer["v_NH"]
        s_BNTS = jnp.where(keep_B11S, jnp.einsum("BTNH,BSNH->BNTS", q_BTNH, k_BSNH) * scale, NEG_INF)
        o_BTNH = jnp.einsum("BNTS,BSNH->BTNH", jax.nn.softmax(s_BNTS, axis=-1), v_BSNH)
        attn_BTD = jnp.einsum("BTNH,NHD->BTD", o_BTNH, layer["o_NHD"]) + layer["o_D"]
        x_BTD = _layer_norm(layer["attn_norm"], x_BTD + attn_BTD, cfg.norm_eps)
        f_BTF = activate(cfg.activation, jnp.einsum("BTD,DF->BTF", x_BTD, layer["up_DF"]) + layer["up_F"])
        mlp_BTD = jnp.einsum("BTF,FD->BTD", f_BTF, layer["down_FD"]) + layer["down_D"]
        x_BTD = _layer_norm(layer["mlp_norm"], x_BTD + mlp_BTD, cfg.norm_eps)
    return x_BTD


def pool(cfg: BertConfig, params: dict, h_BTD: Array, mask_BT: Array, pooling: str) -> Array:
    """Sentence embeddings ``[B, D]``: ``cls`` (the [CLS] state), ``pooler`` (tanh(W·h_CLS + b)) or
    ``mean`` (mean over real tokens, sentence-transformers' mean pooling)."""
    if pooling == "cls":
        return h_BTD[:, 0]
    if pooling == "pooler":
        w_DD, b_D = params["pooler_DD"].astype(jnp.float32), params["pooler_D"].astype(jnp.float32)
        return jnp.tanh(h_BTD[:, 0] @ w_DD + b_D)
    m_BT = mask_BT.astype(jnp.float32)
    return (h_BTD * m_BT[..., None]).sum(1) / jnp.maximum(m_BT.sum(1, keepdims=True), 1e-9)


@flax.struct.dataclass
class Encoder:
    """A loaded sentence encoder. A pytree: ``params`` are leaves, the rest is static.

    ``pooling``: one of ``POOLINGS``. ``max_length``: inputs are truncated to it (the folder's
    ``sentence_bert_config.json`` ``max_seq_length``, else the position table). ``lowercase``:
    sentence-transformers' ``do_lower_case`` (texts are lower-cased before tokenising).
    """

    params: dict
    config: BertConfig = flax.struct.field(pytree_node=False)
    pooling: str = flax.struct.field(pytree_node=False, default="mean")
    tokenizer: Any = flax.struct.field(pytree_node=False, default=None)
    max_length: int = flax.struct.field(pytree_node=False, default=512)
    lowercase: bool = flax.struct.field(pytree_node=False, default=False)

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.pooling == "pooler" and not self.config.pooler:
            raise ValueError("pooling='pooler' needs the pooler layer, which this encoder's weights do not have")
        if not 2 <= self.max_length <= self.config.max_positions:
            raise ValueError(f"max_length must lie in [2, {self.config.max_positions}], got {self.max_length}")

    def embed(self, tokens_BT: Array, mask_BT: Array) -> Array:
        """Pooled float32 embeddings ``[B, D]`` of right-padded ``tokens_BT`` (``mask_BT``: real tokens)."""
        h_BTD = encode(self.config, self.params, tokens_BT, mask_BT)
        return pool(self.config, self.params, h_BTD, mask_BT, self.pooling)
