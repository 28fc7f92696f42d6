"""Building blocks of the decoder: norms, activations, rotary embeddings, masked attention."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from tqjax.models.config import ModelConfig

Array = jax.Array
NEG_INF = float(jnp.finfo(jnp.float32).min)


def einsum_f32(spec: str, a: Array, b: Array) -> Array:
    """``jnp.einsum`` with a float32 result, accumulating in float32 whatever the inputs' dtype.

    XLA:CPU has no bf16 x bf16 -> f32 dot, so on the CPU low-precision operands are upcast
    first; elsewhere the dot itself accumulates in float32 (``preferred_element_type``). The
    choice is made per platform when the program is lowered (`jax.lax.platform_dependent`), not
    by the machine that traced it, so a program exported on a CPU host runs the GPU/TPU path.
    """
    if a.dtype == jnp.float32 and b.dtype == jnp.float32:
        return jnp.einsum(spec, a, b)
    return jax.lax.platform_dependent(
        a, b,
        cpu=lambda a, b: jnp.einsum(spec, a.astype(jnp.float32), b.astype(jnp.float32)),
        default=lambda a, b: jnp.einsum(spec, a, b, preferred_element_type=jnp.float32))


def norm(cfg: ModelConfig, p: dict, x_BTD: Array) -> Array:
    """LayerNorm (gpt2, neox) or RMSNorm (llama), computed in float32, over the last axis.

    RMSNorm scales by ``w`` after the cast back to the input's dtype (Llama), or by
    ``norm_offset + w`` before it (Gemma's ``1 + w``), as transformers does for each.
    """
    x = x_BTD.astype(jnp.float32)
    if cfg.arch == "llama":
        x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + cfg.norm_eps)
        if cfg.norm_offset:
            return (x * (cfg.norm_offset + p["scale"].astype(jnp.float32))).astype(x_BTD.dtype)
        return p["scale"] * x.astype(x_BTD.dtype)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    x = (x - mean) * jax.lax.rsqrt(var + cfg.norm_eps)
    return (x * p["scale"].astype(jnp.float32) + p["bias"].astype(jnp.float32)).astype(x_BTD.dtype)


def softcap(x: Array, cap: float | None) -> Array:
    """``cap * tanh(x / cap)`` (Gemma 2's soft capping of scores and logits); ``x`` when None."""
    return x if cap is None else cap * jnp.tanh(x / cap)


def activate(name: str, x: Array) -> Array:
    if name == "silu":
        return jax.nn.silu(x)
    if name == "gelu":
        return jax.nn.gelu(x, approximate=False)
    if name == "gelu_new":
        return jax.nn.gelu(x, approximate=True)
    return jax.nn.relu(x)


def _inverse_frequencies(cfg: ModelConfig, theta: float) -> Array:
    dim = cfg.rotary_dim
    return 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))


def rope_frequencies(cfg: ModelConfig) -> Array:
    """Inverse frequencies ``[rotary_dim / 2]``, with linear or llama3 scaling applied (longrope's
    two sets are `rope_angles`' concern)."""
    inv_freq = _inverse_frequencies(cfg, cfg.rope_theta)
    if not cfg.rope_scaling or cfg.rope_scaling[0] == "longrope":
        return inv_freq
    if cfg.rope_scaling[0] == "linear":
        return inv_freq / cfg.rope_scaling[1]
    _, factor, low, high, original = cfg.rope_scaling
    wavelen = 2 * math.pi / inv_freq
    scaled = jnp.where(wavelen > original / low, inv_freq / factor, inv_freq)
    smooth = (original / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= original / high) & (wavelen <= original / low)
    return jnp.where(medium, smoothed, scaled)


def rope_angles(cfg: ModelConfig, pos_BT: Array, local=False) -> tuple[Array, Array]:
    """float32 rotation angles ``[B, T, rotary_dim / 2]`` of positions ``pos_BT``, and the factor
    that scales cos and sin (longrope's attention factor, else 1).

    ``local`` (a bool, traced inside the layer scan) marks a sliding-window layer, which uses the
    unscaled base ``rope_local_theta`` when the config has one (Gemma 3). Longrope rotates a token
    at a position below ``original_max_position_embeddings`` with the short factors and one at or
    past it with the long ones (what transformers' decoding with a cache does token by token).
    """
    pos = pos_BT[..., None].astype(jnp.float32)
    if cfg.rope_scaling and cfg.rope_scaling[0] == "longrope":
        _, short, long, original, factor = cfg.rope_scaling
        inv_freq = _inverse_frequencies(cfg, cfg.rope_theta)
        angles = jnp.where(pos >= original, pos * (inv_freq / jnp.asarray(long, jnp.float32)),
                           pos * (inv_freq / jnp.asarray(short, jnp.float32)))
        return angles, factor
    angles = pos * rope_frequencies(cfg)
    if cfg.rope_local_theta is not None and local is not False:
        angles = jnp.where(local, pos * _inverse_frequencies(cfg, cfg.rope_local_theta), angles)
    return angles, 1.0


def apply_rope(cfg: ModelConfig, x_BTNH: Array, pos_BT: Array, local=False) -> Array:
    """Rotate the first ``rotary_dim`` dims of each head (rotate-half convention).

    Written as ``x·cos + roll(x)·sin`` with the sign folded into ``sin``: XLA:CPU fuses this into
    one loop with the transpose that follows, where the two-halves concatenation did not (the
    rollout loop ran ~10% faster, measured interleaved).
    """
    dim = cfg.rotary_dim
    angles, factor = rope_angles(cfg, pos_BT, local)
    cos = jnp.concatenate([jnp.cos(angles)] * 2, axis=-1)[:, :, None, :]
    sin = jnp.sin(angles)
    sin = jnp.concatenate([-sin, sin], axis=-1)[:, :, None, :]
    if factor != 1.0:
        cos, sin = cos * factor, sin * factor
    rot = x_BTNH[..., :dim].astype(jnp.float32)
    rotated = (rot * cos + jnp.roll(rot, dim // 2, axis=-1) * sin).astype(x_BTNH.dtype)
    if dim == x_BTNH.shape[-1]:
        return rotated
    return jnp.concatenate([rotated, x_BTNH[..., dim:]], axis=-1)


@dataclasses.dataclass(frozen=True)
class Scores:
    """How one layer turns ``q·k`` into attention weights: the scale, Gemma 2's soft cap, and a
    sliding window (keys at positions ``p - window < k <= p`` for a query at ``p``; None: all).
    ``window`` may be a traced int inside the layer scan (a full layer then has a window longer
    than any sequence). ``q_pos_BT`` are the queries' positions (needed with a window only)."""

    scale: float
    cap: float | None = None
    window: Any = None
    q_pos_BT: Array | None = None


def attend(q_BTNH: Array, parts: list[tuple], scores: Scores | None = None) -> Array:
    """Softmax attention over the concatenation of several key/value blocks.

    ``parts``: ``(k_BKSH, v_BKSH, mask_BTS)`` blocks, e.g. a shared prefix and a private suffix,
    each with a fourth element ``k_pos_BS`` (the keys' positions) when ``scores`` has a window.
    One softmax runs over all their keys, taken block by block against a shared running maximum,
    so no concatenated score tensor is built. Grouped-query heads: ``N = K * G``; scores are
    ``[B, K, T, G, S]``, the natural output order of the score dot (batch ``B, K``, then the
    query's free axes), so neither dot needs its operands or result transposed.
    """
    B, T, N, H = q_BTNH.shape
    K = parts[0][0].shape[1]
    q_BTKGH = q_BTNH.reshape(B, T, K, N // K, H)
    scores = scores or Scores(scale=1.0 / math.sqrt(H))
    logits = []
    for part in parts:
        k_BKSH, mask_BTS = part[0], part[2]
        if scores.window is not None:
            k_pos_BS = part[3]
            mask_BTS = mask_BTS & (scores.q_pos_BT[:, :, None] - k_pos_BS[:, None, :] < scores.window)
        s = softcap(einsum_f32("BTKGH,BKSH->BKTGS", q_BTKGH, k_BKSH) * scores.scale, scores.cap)
        logits.append(jnp.where(mask_BTS[:, None, :, None, :], s, NEG_INF))
    top = functools.reduce(jnp.maximum, [s.max(axis=-1, keepdims=True) for s in logits])
    out, total = 0.0, 0.0
    for s, part in zip(logits, parts):
        v_BKSH = part[1]
        p = jnp.exp(s - top)
        total = total + p.sum(axis=-1, keepdims=True)
        out = out + einsum_f32("BKTGS,BKSH->BKTGH", p.astype(v_BKSH.dtype), v_BKSH)
    out_BKTGH = out / total
    return out_BKTGH.transpose(0, 2, 1, 3, 4).reshape(B, T, N, H).astype(q_BTNH.dtype)
