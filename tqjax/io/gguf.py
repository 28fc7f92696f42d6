"""Load a llama.cpp GGUF file (one file: config, weights, tokenizer) with the ``gguf`` package, no torch.

What a file becomes:

- **Config** from the ``<arch>.*`` metadata (architectures ``llama`` and ``qwen2``; anything else,
  and any ``<arch>.*`` key that would change the math, is refused with the key named).
- **Weights** read by `tqjax.io.gguf_reader` and dequantised with ``gguf.quants`` (F32, F16, BF16,
  Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the K-quants Q2_K..Q6_K) to float32, or to ``dtype``.
  llama.cpp's converter stores a Llama's q and k projections with the rows of every head
  reordered for its interleaved ("normal") RoPE; they are put back in Hugging Face's half-split
  order here, so the same rotary code runs both. Qwen2 files use the NeoX-style RoPE and are
  stored unpermuted. No ``output.weight`` means tied embeddings.
- **Tokenizer** from the ``tokenizer.*`` metadata (`tqjax.io.gguf_tokenizer`).

Special tokens follow the file, as llama.cpp reads it: ``bos_token_id`` / ``eos_token_id`` /
``padding_token_id`` are ``tokenizer.ggml.bos_token_id`` / ``eos_token_id`` / ``padding_token_id``
(for SmolLM2-Instruct that is BOS ``<|im_start|>`` (1), EOS ``<|im_end|>`` (2), pad 2, exactly what
its Hugging Face repo says); a BOS is prepended only when ``tokenizer.ggml.add_bos_token`` is true
(False for SmolLM2, as in its repo). The stop set is the file's EOS plus its end-of-turn and
end-of-message ids (``tokenizer.ggml.eot_token_id`` / ``eom_token_id``) when it has them; unlike
llama.cpp, tqjax does not add further stop tokens guessed from their text (``<|endoftext|>``,
``<|eot_id|>`` ...): pass those as ``DecodeConfig.stop_token_ids`` when a model needs them.
"""

from __future__ import annotations

import os

import numpy as np

from tqjax.io.errors import CheckpointError, UnsupportedModelError
from tqjax.io.gguf_reader import MAGIC, Tensor, read_gguf
from tqjax.io.hf_weights import convert
from tqjax.models.config import ModelConfig

CHUNK = 1 << 16     # blocks dequantised at a time (bounds the temporaries)
ARCHS = ("llama", "qwen2")
# ggml tensor types that gguf.quants dequantises and tqjax accepts
TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")

# <arch>.<key>s that tqjax reads, and those that never change the forward pass
READ = {"context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
        "attention.head_count_kv", "attention.layer_norm_rms_epsilon", "rope.freq_base", "rope.dimension_count",
        "attention.key_length", "attention.value_length", "vocab_size", "rope.scaling.type",
        "rope.scaling.factor", "rope.scaling.original_context_length"}
HARMLESS = {"tensor_data_layout", "rope.scaling.finetuned", "attention.causal", "pooling_type"}

# llama.cpp tensor name -> Hugging Face name (per layer: "blk.{i}." -> "model.layers.{i}.")
GLOBAL = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
          "output.weight": "lm_head.weight"}
LAYER = {"attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
         "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
         "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
         "attn_q.bias": "self_attn.q_proj.bias", "attn_k.bias": "self_attn.k_proj.bias",
         "attn_v.bias": "self_attn.v_proj.bias", "ffn_gate.weight": "mlp.gate_proj.weight",
         "ffn_up.weight": "mlp.up_proj.weight", "ffn_down.weight": "mlp.down_proj.weight"}


def is_gguf(path: str) -> bool:
    """Whether ``path`` is a file named ``*.gguf`` or starting with the GGUF magic bytes."""
    if not os.path.isfile(path):
        return False
    if path.lower().endswith(".gguf"):
        return True
    with open(path, "rb") as f:
        return f.read(4) == MAGIC


def config_from_gguf(meta: dict, tensor_shapes: dict, path: str = "") -> ModelConfig:
    """A `ModelConfig` from the metadata and ``{name: numpy shape}`` of the tensors, strictly."""
    arch = meta.get("general.architecture")
    if arch not in ARCHS:
        raise UnsupportedModelError(f"{path}: unsupported GGUF architecture {arch!r}; tqjax reads {', '.join(ARCHS)}")
    own = {k[len(arch) + 1:]: v for k, v in meta.items() if k.startswith(arch + ".")}
    unknown = sorted(k for k in own if k not in READ | HARMLESS)
    if unknown:
        raise UnsupportedModelError(f"{path}: unhandled {arch} setting(s): {', '.join(arch + '.' + k for k in unknown)}")

    def need(key):
        if key not in own:
            raise CheckpointError(f"{path}: metadata {arch}.{key} is missing")
        return own[key]

    D, N = int(need("embedding_length")), int(need("attention.head_count"))
    K = int(own.get("attention.head_count_kv", N))
    H = int(own.get("attention.key_length", D // N))
    if int(own.get("attention.value_length", H)) != H:
        raise UnsupportedModelError(f"{path}: {arch}.attention.value_length {own['attention.value_length']} "
                                    f"differs from key_length {H}")
    if int(own.get("rope.dimension_count", H)) != H:
        raise UnsupportedModelError(f"{path}: partial RoPE ({arch}.rope.dimension_count "
                                    f"{own['rope.dimension_count']} of head size {H}) is not supported")
    if "token_embd.weight" not in tensor_shapes:
        raise CheckpointError(f"{path}: missing tensor token_embd.weight")
    V = tensor_shapes["token_embd.weight"][0]
    tokens = meta.get("tokenizer.ggml.tokens")
    for what, n in (("the token list", None if tokens is None else len(tokens)), (f"{arch}.vocab_size", own.get("vocab_size"))):
        if n is not None and int(n) != V:
            raise CheckpointError(f"{path}: {what} has {n} entries but token_embd.weight has {V} rows")
    eos = [meta[f"tokenizer.ggml.{k}_token_id"] for k in ("eos", "eot", "eom") if f"tokenizer.ggml.{k}_token_id" in meta]
    try:
        return ModelConfig(arch="llama", vocab_size=V, d_model=D, n_layers=int(need("block_count")), n_heads=N,
                           n_kv_heads=K, head_dim=H, mlp_dim=int(need("feed_forward_length")),
                           max_positions=int(need("context_length")),
                           norm_eps=float(need("attention.layer_norm_rms_epsilon")), activation="silu",
                           rope_theta=float(own.get("rope.freq_base", 10000.0)), rope_scaling=_rope_scaling(own, arch, path),
                           qkv_bias=arch == "qwen2", tie_embeddings="output.weight" not in tensor_shapes,
                           bos_token_id=_id(meta, "bos"), eos_token_id=sorted({int(i) for i in eos}),
                           pad_token_id=_id(meta, "padding"))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from None


def _id(meta: dict, name: str):
    value = meta.get(f"tokenizer.ggml.{name}_token_id")
    return None if value is None else int(value)


def _rope_scaling(own: dict, arch: str, path: str) -> tuple:
    kind = own.get("rope.scaling.type", "none")
    if kind == "none":
        return ()
    if kind == "linear":
        return ("linear", float(own["rope.scaling.factor"]))
    raise UnsupportedModelError(f"{path}: unsupported RoPE scaling {arch}.rope.scaling.type={kind!r} (supported: none, linear)")


def unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row order: per head, rows (pair j, half h) -> (half h, pair j)."""
    pairs = w.shape[0] // heads // 2
    return w.reshape(heads, pairs, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def dequantize(tensor: Tensor, path: str = "") -> np.ndarray:
    """One tensor as a float32 numpy array in numpy order (``[out, in]`` for a matrix)."""
    import gguf

    kind = tensor.qtype.name
    if kind not in TYPES:
        raise UnsupportedModelError(f"{path}: tensor {tensor.name} has ggml type {kind}, which tqjax does not "
                                    f"dequantise (supported: {', '.join(TYPES)})")
    if kind in ("F32", "F16"):
        return tensor.data.view(np.float32 if kind == "F32" else np.float16).astype(np.float32).reshape(tensor.shape)
    size = gguf.GGML_QUANT_SIZES[tensor.qtype][1]
    blocks = tensor.data.reshape(-1, size)
    codec = getattr(gguf.quants, kind)     # gguf's numpy codec of this type, run over all blocks at once
    chunks = [codec.dequantize_blocks(blocks[i:i + CHUNK]).reshape(-1) for i in range(0, len(blocks), CHUNK)]
    return np.concatenate(chunks).astype(np.float32, copy=False).reshape(tensor.shape)


def hf_tensors(tensors: list[Tensor], config: ModelConfig, arch: str, path: str = "") -> dict:
    """The file's tensors under Hugging Face names, dequantised, q/k rows in Hugging Face order."""
    out = {}
    for tensor in tensors:
        name = tensor.name
        if name.startswith("blk."):
            index, _, rest = name[4:].partition(".")
            hf = LAYER.get(rest)
            hf = hf and f"model.layers.{index}.{hf}"
        else:
            hf = GLOBAL.get(name)
        if hf is None:
            hint = " (Llama 3 RoPE frequency factors)" if name == "rope_freqs.weight" else ""
            raise UnsupportedModelError(f"{path}: unexpected tensor {name}{hint} for architecture {arch}")
        if hf in out:
            raise CheckpointError(f"{path}: tensor {name} appears twice")
        value = dequantize(tensor, path)
        if arch == "llama" and (".attn_q." in name or ".attn_k." in name):
            value = unpermute(value, config.n_heads if ".attn_q." in name else config.n_kv_heads)
        out[hf] = value
    return out


def load_gguf(path: str, dtype=None):
    """``(config, params, tokenizer)`` of a GGUF file; params float32 numpy (``dtype`` casts)."""
    from tqjax.io.gguf_tokenizer import tokenizer_from_gguf

    if not os.path.isfile(path):
        raise FileNotFoundError(f"GGUF file {path!r} does not exist (tqjax never downloads)")
    meta, table = read_gguf(path)
    config = config_from_gguf(meta, {t.name: t.shape for t in table}, path)
    tensors = hf_tensors(table, config, meta["general.architecture"], path)
    try:
        params = convert(config, tensors)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {_gguf_names(str(e))}") from None
    if dtype is not None:
        params = _cast(params, dtype)
    return config, params, tokenizer_from_gguf(meta, path)


def _cast(tree, dtype):
    import jax

    return jax.tree.map(lambda a: np.asarray(a).astype(dtype), tree)


def _gguf_names(message: str) -> str:
    """A converter message with Hugging Face tensor names written back as the file's names."""
    back = {hf: gg for gg, hf in GLOBAL.items()}
    for gg, hf in LAYER.items():
        back["." + hf] = "." + gg
    for hf, gg in sorted(back.items(), key=lambda kv: -len(kv[0])):
        message = message.replace(hf, gg)
    return message.replace("model.layers.", "blk.")
