"""Hugging Face tensor names -> tqjax parameters: one key table per architecture, every shape asserted."""

from __future__ import annotations

from typing import Callable

import numpy as np

from tqjax.io.errors import CheckpointError
from tqjax.models.config import ModelConfig
from tqjax.models.transformer import param_shapes

# (hf name, hf shape, convert: array -> {our path: array})
Entry = tuple[str, tuple, Callable[[np.ndarray], dict]]

BUFFERS = (".attn.bias", ".attn.masked_bias", ".attention.bias", ".attention.masked_bias", ".rotary_emb.inv_freq")


def _to(path, fn=lambda w: w):
    return lambda w: {path: fn(w)}


def _norm(prefix: str, ours: tuple, cfg: ModelConfig) -> list[Entry]:
    D = cfg.d_model
    entries = [(f"{prefix}.weight", (D,), _to(ours + ("scale",)))]
    if cfg.arch != "llama":
        entries.append((f"{prefix}.bias", (D,), _to(ours + ("bias",))))
    return entries


def _llama(cfg: ModelConfig) -> list[Entry]:
    D, N, K, H, F = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.mlp_dim
    out = [("model.embed_tokens.weight", (cfg.vocab_size, D), _to(("embed_VD",)))]
    out += _norm("model.norm", ("final_norm",), cfg)
    for i in range(cfg.n_layers):
        p, L = f"model.layers.{i}", ("layers", i)
        out.append((f"{p}.input_layernorm.weight", (D,), _to(L + ("attn_norm", "scale"))))
        if cfg.sandwich_norms:      # Gemma 2/3: post_attention_layernorm normalises the attention output
            out += [(f"{p}.post_attention_layernorm.weight", (D,), _to(L + ("post_attn_norm", "scale"))),
                    (f"{p}.pre_feedforward_layernorm.weight", (D,), _to(L + ("mlp_norm", "scale"))),
                    (f"{p}.post_feedforward_layernorm.weight", (D,), _to(L + ("post_mlp_norm", "scale")))]
        else:
            out.append((f"{p}.post_attention_layernorm.weight", (D,), _to(L + ("mlp_norm", "scale"))))
        if cfg.qk_norm:
            out += [(f"{p}.self_attn.q_norm.weight", (H,), _to(L + ("q_norm", "scale"))),
                    (f"{p}.self_attn.k_norm.weight", (H,), _to(L + ("k_norm", "scale")))]
        out += [
                (f"{p}.self_attn.q_proj.weight", (N * H, D), _to(L + ("q_DNH",), lambda w: w.T.reshape(D, N, H))),
                (f"{p}.self_attn.k_proj.weight", (K * H, D), _to(L + ("k_DKH",), lambda w: w.T.reshape(D, K, H))),
                (f"{p}.self_attn.v_proj.weight", (K * H, D), _to(L + ("v_DKH",), lambda w: w.T.reshape(D, K, H))),
                (f"{p}.self_attn.o_proj.weight", (D, N * H), _to(L + ("o_NHD",), lambda w: w.T.reshape(N, H, D))),
                (f"{p}.mlp.gate_proj.weight", (F, D), _to(L + ("gate_DF",), lambda w: w.T)),
                (f"{p}.mlp.up_proj.weight", (F, D), _to(L + ("up_DF",), lambda w: w.T)),
                (f"{p}.mlp.down_proj.weight", (D, F), _to(L + ("down_FD",), lambda w: w.T))]
        if cfg.qkv_bias:
            out += [(f"{p}.self_attn.q_proj.bias", (N * H,), _to(L + ("q_NH",), lambda w: w.reshape(N, H))),
                    (f"{p}.self_attn.k_proj.bias", (K * H,), _to(L + ("k_KH",), lambda w: w.reshape(K, H))),
                    (f"{p}.self_attn.v_proj.bias", (K * H,), _to(L + ("v_KH",), lambda w: w.reshape(K, H)))]
        if cfg.out_bias:
            out.append((f"{p}.self_attn.o_proj.bias", (D,), _to(L + ("o_D",))))
        if cfg.mlp_bias:
            out += [(f"{p}.mlp.gate_proj.bias", (F,), _to(L + ("gate_F",))),
                    (f"{p}.mlp.up_proj.bias", (F,), _to(L + ("up_F",))),
                    (f"{p}.mlp.down_proj.bias", (D,), _to(L + ("down_D",)))]
    return out


def _gpt2(cfg: ModelConfig) -> list[Entry]:
    D, N, H, F = cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.mlp_dim

    def split_qkv(w):
        q, k, v = np.split(w, 3, axis=-1)
        shape = w.shape[:-1] + (N, H)
        if w.ndim == 1:
            return {"q_NH": q.reshape(shape), "k_KH": k.reshape(shape), "v_KH": v.reshape(shape)}
        return {"q_DNH": q.reshape(shape), "k_DKH": k.reshape(shape), "v_DKH": v.reshape(shape)}

    out = [("transformer.wte.weight", (cfg.vocab_size, D), _to(("embed_VD",))),
           ("transformer.wpe.weight", (cfg.max_positions, D), _to(("pos_PD",)))]
    out += _norm("transformer.ln_f", ("final_norm",), cfg)
    for i in range(cfg.n_layers):
        p, L = f"transformer.h.{i}", ("layers", i)
        out += _norm(f"{p}.ln_1", L + ("attn_norm",), cfg) + _norm(f"{p}.ln_2", L + ("mlp_norm",), cfg)
        out += [(f"{p}.attn.c_attn.weight", (D, 3 * D), lambda w, L=L: {L + (k,): v for k, v in split_qkv(w).items()}),
                (f"{p}.attn.c_attn.bias", (3 * D,), lambda w, L=L: {L + (k,): v for k, v in split_qkv(w).items()}),
                (f"{p}.attn.c_proj.weight", (D, D), _to(L + ("o_NHD",), lambda w: w.reshape(N, H, D))),
                (f"{p}.attn.c_proj.bias", (D,), _to(L + ("o_D",))),
                (f"{p}.mlp.c_fc.weight", (D, F), _to(L + ("up_DF",))),
                (f"{p}.mlp.c_fc.bias", (F,), _to(L + ("up_F",))),
                (f"{p}.mlp.c_proj.weight", (F, D), _to(L + ("down_FD",))),
                (f"{p}.mlp.c_proj.bias", (D,), _to(L + ("down_D",)))]
    return out


def _neox(cfg: ModelConfig) -> list[Entry]:
    D, N, H, F = cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.mlp_dim

    def split_qkv(w, L):
        heads = w.reshape((N, 3, H) + w.shape[1:])          # per head: [q | k | v]
        names = ("q_NH", "k_KH", "v_KH") if w.ndim == 1 else ("q_DNH", "k_DKH", "v_DKH")
        return {L + (name,): (heads[:, j] if w.ndim == 1 else heads[:, j].transpose(2, 0, 1))
                for j, name in enumerate(names)}

    out = [("gpt_neox.embed_in.weight", (cfg.vocab_size, D), _to(("embed_VD",)))]
    out += _norm("gpt_neox.final_layer_norm", ("final_norm",), cfg)
    for i in range(cfg.n_layers):
        p, L = f"gpt_neox.layers.{i}", ("layers", i)
        out += _norm(f"{p}.input_layernorm", L + ("attn_norm",), cfg)
        out += _norm(f"{p}.post_attention_layernorm", L + ("mlp_norm",), cfg)
        out += [(f"{p}.attention.query_key_value.weight", (3 * D, D), lambda w, L=L: split_qkv(w, L)),
                (f"{p}.attention.dense.weight", (D, D), _to(L + ("o_NHD",), lambda w: w.T.reshape(N, H, D))),
                (f"{p}.mlp.dense_h_to_4h.weight", (F, D), _to(L + ("up_DF",), lambda w: w.T)),
                (f"{p}.mlp.dense_h_to_4h.bias", (F,), _to(L + ("up_F",))),
                (f"{p}.mlp.dense_4h_to_h.weight", (D, F), _to(L + ("down_FD",), lambda w: w.T)),
                (f"{p}.mlp.dense_4h_to_h.bias", (D,), _to(L + ("down_D",)))]
        if cfg.qkv_bias:
            out.append((f"{p}.attention.query_key_value.bias", (3 * D,), lambda w, L=L: split_qkv(w, L)))
        if cfg.out_bias:
            out.append((f"{p}.attention.dense.bias", (D,), _to(L + ("o_D",))))
    return out


def key_table(cfg: ModelConfig) -> list[Entry]:
    """Every Hugging Face tensor the architecture needs, with its shape and conversion."""
    table = {"llama": _llama, "gpt2": _gpt2, "neox": _neox}[cfg.arch](cfg)
    if cfg.kind == "reward":
        table.append(("score.weight", (1, cfg.d_model), _to(("score_D",), lambda w: w[0])))
    elif not cfg.tie_embeddings:
        head = "gpt_neox.embed_out.weight" if cfg.arch == "neox" else "lm_head.weight"
        table.append((head, (cfg.vocab_size, cfg.d_model), _to(("head_DV",), lambda w: w.T)))
    return table


def _canonical(name: str, cfg: ModelConfig) -> str:
    """Spellings that differ between checkpoints of one architecture, mapped to the table's."""
    if cfg.arch == "gpt2" and not name.startswith(("transformer.", "lm_head", "score")):
        return "transformer." + name
    if cfg.arch == "neox" and name in ("embed_out.weight", "lm_head.weight"):
        return "gpt_neox.embed_out.weight"
    return name


FUSED = {".self_attn.qkv_proj.weight": (".self_attn.q_proj.weight", ".self_attn.k_proj.weight", ".self_attn.v_proj.weight"),
         ".mlp.gate_up_proj.weight": (".mlp.gate_proj.weight", ".mlp.up_proj.weight")}


def _unfuse(cfg: ModelConfig, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Phi-3's fused ``qkv_proj`` (rows: q heads, then k, then v) and ``gate_up_proj`` (gate rows,
    then up) as the separate tensors of the Llama table; anything else unchanged."""
    if cfg.arch != "llama":
        return tensors
    out = {}
    for name, value in tensors.items():
        fused = next((f for f in FUSED if name.endswith(f)), None)
        if fused is None:
            out[name] = value
            continue
        rows = ((cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim)
                if "qkv" in fused else (cfg.mlp_dim, cfg.mlp_dim))
        if value.ndim != 2 or value.shape[0] != sum(rows):
            raise CheckpointError(f"tensor {name} has shape {tuple(value.shape)}, expected ({sum(rows)}, {cfg.d_model})")
        stem = name[: -len(fused)]
        for part, chunk in zip(FUSED[fused], np.split(value, np.cumsum(rows)[:-1], axis=0)):
            out[stem + part] = chunk
    return out


def convert(cfg: ModelConfig, tensors: dict[str, np.ndarray]) -> dict:
    """Our parameter tree from a flat dict of Hugging Face tensors (strict: names and shapes)."""
    named = {}
    for name, value in _unfuse(cfg, tensors).items():
        if name.endswith(BUFFERS):
            continue
        if cfg.tie_embeddings and name == "lm_head.weight":
            continue   # tied head: the embedding is the head
        named[_canonical(name, cfg)] = value
    table = key_table(cfg)
    expected = {name for name, _, _ in table}
    missing = sorted(expected - named.keys())
    unexpected = sorted(named.keys() - expected)
    if missing:
        raise CheckpointError(f"missing tensor(s): {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else ""))
    if unexpected:
        raise CheckpointError(f"unexpected tensor(s): {', '.join(unexpected[:8])}" + (" ..." if len(unexpected) > 8 else ""))
    flat = {}
    for name, shape, fn in table:
        value = named[name]
        if tuple(value.shape) != shape:
            raise CheckpointError(f"tensor {name} has shape {tuple(value.shape)}, expected {shape}")
        flat.update(fn(np.asarray(value)))
    return _unflatten(cfg, flat)


def _unflatten(cfg: ModelConfig, flat: dict) -> dict:
    """The tree of ``flat`` (keyed by per-layer paths), with the layers stacked ``[L, ...]``."""
    shapes = param_shapes(cfg, stacked=False)

    def build(node, path):
        if isinstance(node, dict):
            return {k: build(v, path + (k,)) for k, v in node.items()}
        if isinstance(node, list):
            return [build(v, path + (i,)) for i, v in enumerate(node)]
        value = flat[path]
        assert tuple(value.shape) == node, (path, value.shape, node)
        return value

    params = build(shapes, ())
    params["layers"] = _stack(params["layers"])
    return params


def _stack(nodes: list):
    if isinstance(nodes[0], dict):
        return {k: _stack([n[k] for n in nodes]) for k in nodes[0]}
    return np.stack(nodes)
