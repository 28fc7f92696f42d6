"""The decoder as pure functions over a parameter pytree.

Parameter names carry their dimensions (``q_DNH``: model width -> query heads x head dim).
The layers are stacked: every leaf under ``params["layers"]`` has a leading ``L`` axis
(``q_DNH``: ``[L, D, N, H]``), and the blocks run as one `lax.scan` over it, so a program's
size and compile time do not grow with depth. Every attention mode (prefill, append, rollout
suffix) runs the same blocks; only the function that reads and writes keys and values differs,
and it is passed in with the state it carries through the layers (e.g. a stacked KV cache).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from tqjax.models.config import ModelConfig
from tqjax.models.layers import Scores, activate, apply_rope, einsum_f32, norm, softcap

Array = jax.Array
# (layer index: traced int32, state, q_BTNH, k_BTKH, v_BTKH, scores) -> (attention output
# q-shaped, state); ``scores`` (`layers.Scores`) is the layer's scale, cap and window for `attend`
AttnFn = Callable[[Array, Any, Array, Array, Array, Scores], tuple[Array, Any]]
FULL = 1 << 30          # the window of a full-attention layer among windowed ones


def layer_shapes(cfg: ModelConfig) -> dict:
    """The shape of one layer's parameters (the slice of ``params["layers"]`` one block sees)."""
    D, N, K, H, F = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.mlp_dim
    ln = {"scale": (D,)} if cfg.arch == "llama" else {"scale": (D,), "bias": (D,)}
    layer = {"attn_norm": dict(ln), "mlp_norm": dict(ln),
             "q_DNH": (D, N, H), "k_DKH": (D, K, H), "v_DKH": (D, K, H), "o_NHD": (N, H, D),
             "up_DF": (D, F), "down_FD": (F, D)}
    if cfg.qk_norm:
        layer.update(q_norm={"scale": (H,)}, k_norm={"scale": (H,)})
    if cfg.sandwich_norms:
        layer.update(post_attn_norm=dict(ln), post_mlp_norm=dict(ln))
    if cfg.arch == "llama":
        layer["gate_DF"] = (D, F)
    if cfg.qkv_bias:
        layer.update(q_NH=(N, H), k_KH=(K, H), v_KH=(K, H))
    if cfg.out_bias:
        layer["o_D"] = (D,)
    if cfg.mlp_bias:
        layer.update(up_F=(F,), down_D=(D,))
        if cfg.arch == "llama":
            layer["gate_F"] = (F,)
    return layer


def param_shapes(cfg: ModelConfig, stacked: bool = True) -> dict:
    """The shape of every parameter, as a pytree of tuples (one source of truth for init/import).

    ``params["layers"]`` is one dict whose leaves have a leading ``L`` axis; ``stacked=False``
    gives the per-layer list of tqjax checkpoints of format 1 instead.
    """
    D, V, L = cfg.d_model, cfg.vocab_size, cfg.n_layers
    ln = {"scale": (D,)} if cfg.arch == "llama" else {"scale": (D,), "bias": (D,)}
    layer = layer_shapes(cfg)
    layers = jax.tree.map(lambda s: (L,) + s, layer, is_leaf=is_shape) if stacked else [layer] * L
    shapes = {"embed_VD": (V, D), "layers": layers, "final_norm": dict(ln)}
    if cfg.arch == "gpt2":
        shapes["pos_PD"] = (cfg.max_positions, D)
    if cfg.kind == "reward":
        shapes["score_D"] = (D,)
    elif not cfg.tie_embeddings:
        shapes["head_DV"] = (D, V)
    return shapes


def stack_layers(layers: list):
    """A per-layer list of parameter trees as one tree with a leading ``L`` axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *layers)


BIASES = ("bias", "q_NH", "k_KH", "v_KH", "o_D", "up_F", "gate_F", "down_D")


def is_shape(x) -> bool:
    """True for a leaf of `param_shapes` (a tuple of ints): the ``is_leaf`` of its tree maps."""
    return isinstance(x, tuple) and all(isinstance(d, int) for d in x)


def init_params(cfg: ModelConfig, key: Array, dtype=jnp.float32) -> dict:
    """Random parameters: N(0, 0.02) matrices, unit norm scales, zero biases.

    Drawn layer by layer (one key per per-layer leaf) and then stacked, so a seed gives the same
    weights as it did before the layers were stacked.
    """
    shapes = param_shapes(cfg, stacked=False)
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=is_shape)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(shapes, is_leaf=is_shape)[0]]
    keys = jax.random.split(key, len(leaves))
    out = []
    for path, shape, k in zip(paths, leaves, keys):
        if "scale" in path:
            out.append(jnp.ones(shape, dtype))
        elif path.rsplit("'", 2)[-2] in BIASES:
            out.append(jnp.zeros(shape, dtype))
        else:
            out.append((0.02 * jax.random.normal(k, shape, jnp.float32)).astype(dtype))
    params = jax.tree.unflatten(treedef, out)
    return dict(params, layers=stack_layers(params["layers"]))


def embed(cfg: ModelConfig, params: dict, tokens_BT: Array, pos_BT: Array) -> Array:
    x_BTD = jnp.take(params["embed_VD"], tokens_BT, axis=0)
    if cfg.embed_scale:
        x_BTD = x_BTD * jnp.asarray(cfg.d_model ** 0.5, x_BTD.dtype)
    if cfg.arch == "gpt2":
        x_BTD = x_BTD + jnp.take(params["pos_PD"], jnp.clip(pos_BT, 0, cfg.max_positions - 1), axis=0)
    return x_BTD


def _mlp(cfg: ModelConfig, p: dict, h_BTD: Array) -> Array:
    up = jnp.einsum("BTD,DF->BTF", h_BTD, p["up_DF"])
    if "up_F" in p:
        up = up + p["up_F"]
    if cfg.arch == "llama":
        gate = jnp.einsum("BTD,DF->BTF", h_BTD, p["gate_DF"])
        if "gate_F" in p:
            gate = gate + p["gate_F"]
        hidden = activate(cfg.activation, gate) * up
    else:
        hidden = activate(cfg.activation, up)
    out = jnp.einsum("BTF,FD->BTD", hidden, p["down_FD"])
    return out + p["down_D"] if "down_D" in p else out


def _attention(cfg: ModelConfig, p: dict, h_BTD: Array, pos_BT: Array, layer: Array, state,
               attn: AttnFn, window, local) -> tuple[Array, Any]:
    q = jnp.einsum("BTD,DNH->BTNH", h_BTD, p["q_DNH"])
    k = jnp.einsum("BTD,DKH->BTKH", h_BTD, p["k_DKH"])
    v = jnp.einsum("BTD,DKH->BTKH", h_BTD, p["v_DKH"])
    if cfg.qkv_bias:
        q, k, v = q + p["q_NH"], k + p["k_KH"], v + p["v_KH"]
    if cfg.qk_norm:
        q, k = norm(cfg, p["q_norm"], q), norm(cfg, p["k_norm"], k)
    if cfg.arch != "gpt2":
        q, k = apply_rope(cfg, q, pos_BT, local), apply_rope(cfg, k, pos_BT, local)
    scale = cfg.attn_scale if cfg.attn_scale is not None else cfg.head_dim ** -0.5
    scores = Scores(scale=scale, cap=cfg.attn_softcap, window=window, q_pos_BT=pos_BT)
    a, state = attn(layer, state, q, k, v, scores)
    out = jnp.einsum("BTNH,NHD->BTD", a, p["o_NHD"])
    return (out + p["o_D"] if cfg.out_bias else out), state


def blocks(cfg: ModelConfig, layers, x_BTD: Array, pos_BT: Array, attn: AttnFn, state=(),
           first: int = 0) -> tuple[Array, Any]:
    """Run the blocks ``first, first + 1, ...`` over the residual stream ``x_BTD`` ``[B, T, D]``.

    ``layers`` holds those blocks' parameters: stacked (leaves ``[n, ...]``, one `lax.scan`) or a
    tuple of per-layer dicts (`split_layers`, unrolled). ``attn`` gets each block's index in the
    whole model, ``state`` is carried through them. Returns ``(x_BTD, state)``, not normed.
    """

    def block(carry, xs):
        x, state = carry
        i, p, window, local = xs
        a, state = _attention(cfg, p, norm(cfg, p["attn_norm"], x), pos_BT, i, state, attn, window, local)
        if cfg.sandwich_norms:
            a = norm(cfg, p["post_attn_norm"], a)
        if cfg.parallel_residual:
            return (x + a + _mlp(cfg, p, norm(cfg, p["mlp_norm"], x)), state), None
        x = x + a
        m = _mlp(cfg, p, norm(cfg, p["mlp_norm"], x))
        if cfg.sandwich_norms:
            m = norm(cfg, p["post_mlp_norm"], m)
        return (x + m, state), None

    n = len(layers) if isinstance(layers, tuple) else jax.tree.leaves(layers)[0].shape[0]
    windows = cfg.windows[first:first + n]
    locals_ = tuple(w is not None for w in windows)
    x = x_BTD
    if isinstance(layers, tuple):     # split by `split_layers`: unrolled, in place
        for i, p in enumerate(layers):
            (x, state), _ = block((x, state), (first + i, p, windows[i], locals_[i]))
    elif n:
        xs = (jnp.arange(first, first + n, dtype=jnp.int32), layers)
        if len(set(windows)) == 1:      # one window (or none) for every layer: static
            (x, state), _ = jax.lax.scan(lambda c, xs: block(c, xs + (windows[0], locals_[0])), (x, state), xs)
        else:
            per_layer = (jnp.asarray([FULL if w is None else w for w in windows], jnp.int32), jnp.asarray(locals_))
            (x, state), _ = jax.lax.scan(block, (x, state), xs + per_layer)
    return x, state


def hidden(cfg: ModelConfig, params: dict, tokens_BT: Array, pos_BT: Array, attn: AttnFn,
           state=()) -> tuple[Array, Any]:
    """Final-normed hidden states ``[B, T, D]`` of ``tokens_BT`` at positions ``pos_BT``.

    `embed`, then every block (`blocks`), then the final norm; ``state`` (e.g. the stacked KV
    cache) is carried through the blocks and handed to ``attn`` with the layer's index. Returns
    ``(h_BTD, state)``.
    """
    x, state = blocks(cfg, params["layers"], embed(cfg, params, tokens_BT, pos_BT), pos_BT, attn, state)
    return norm(cfg, params["final_norm"], x), state


# Models with at most this many layers run them unrolled inside the decoding loops, each layer's
# weights a buffer of its own (`split_layers`); deeper models keep the scan, whose program size and
# compile time do not grow with depth. On XLA:CPU a dot cannot read a slice of the stacked weights
# in place: inside a loop the scan copies every layer's weights at every step
# (benchmarks/README.md, "Compile time and depth").
UNROLL_LAYERS = 4


def runs_unrolled(layers: str, n_layers: int, one_device: bool) -> bool:
    """Whether the decoding loops run a model's layers unrolled (`DecodeConfig.layers`): ``unroll``
    and ``scan`` as asked; ``auto`` unrolls on one device at most `UNROLL_LAYERS` layers."""
    if layers == "auto":
        return one_device and n_layers <= UNROLL_LAYERS
    return layers == "unroll"


def split_layers(params: dict) -> dict:
    """``params`` with the stacked ``layers`` (``[L, ...]``) as a tuple of per-layer dicts, for
    `hidden` to run unrolled. Call it once, outside the loops that run the model: the slices are
    then made once per program, not once per step."""
    layers = params["layers"]
    n = jax.tree.leaves(layers)[0].shape[0]
    return dict(params, layers=tuple(jax.tree.map(lambda x: x[i], layers) for i in range(n)))


def head(cfg: ModelConfig, params: dict, h_BTD: Array) -> Array:
    """float32 logits ``[B, T, V]`` (lm) or scores ``[B, T]`` (reward)."""
    if cfg.kind == "reward":
        return einsum_f32("BTD,D->BT", h_BTD, params["score_D"])
    if "head_DV" in params:
        return softcap(einsum_f32("BTD,DV->BTV", h_BTD, params["head_DV"]), cfg.final_softcap)
    return softcap(einsum_f32("BTD,VD->BTV", h_BTD, params["embed_VD"]), cfg.final_softcap)
