"""Tiny GGUF files for tests: a random transformers Llama / Qwen2 and a trained byte-level BPE,
written with gguf's ``GGUFWriter`` under llama.cpp's tensor names and row order."""

from __future__ import annotations

import os

import gguf
import numpy as np
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
            "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
CORPUS = ["The quick brown fox jumps over the lazy dog. 12345 67890 3.14 2024-01-01",
          "Ünïcödé téxt, 日本語のテキスト, emoji 🙂🚀 and code: def f(x): return x ** 2",
          "user assistant system hello world, what is the answer? It is 42!"] * 20
SIZES = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0)


def bpe(digits: bool = True) -> Tokenizer:
    """A byte-level BPE (every byte plus ~100 merges) whose first ids are `SPECIALS`."""
    tok = Tokenizer(models.BPE())
    steps = [pre_tokenizers.Digits(individual_digits=True)] if digits else []
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps + [pre_tokenizers.ByteLevel(add_prefix_space=False)])
    trainer = trainers.BpeTrainer(vocab_size=360, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def hf_model(arch: str, vocab: int, tied: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    cls = transformers.Qwen2Config if arch == "qwen2" else transformers.LlamaConfig
    config = cls(vocab_size=vocab, tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2, pad_token_id=2, **SIZES)
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter order for q/k rows: per head, (half h, pair j) -> (pair j, half h)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(model, arch: str) -> dict[str, np.ndarray]:
    """The model's tensors under llama.cpp names (q/k rows permuted for a llama)."""
    c = model.config
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    out = {"token_embd.weight": sd["model.embed_tokens.weight"], "output_norm.weight": sd["model.norm.weight"]}
    if not c.tie_word_embeddings:
        out["output.weight"] = sd["lm_head.weight"]
    names = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
             "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
             "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
             "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
             "self_attn.v_proj.bias": "attn_v.bias", "mlp.gate_proj.weight": "ffn_gate.weight",
             "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"}
    for i in range(c.num_hidden_layers):
        for hf, gg in names.items():
            key = f"model.layers.{i}.{hf}"
            if key not in sd:
                continue
            w = sd[key]
            if arch == "llama" and gg in ("attn_q.weight", "attn_k.weight"):
                w = permute(w, c.num_attention_heads if gg == "attn_q.weight" else c.num_key_value_heads)
            out[f"blk.{i}.{gg}"] = w
    return out


def random_k_quant(shape: tuple, qtype) -> np.ndarray:
    """Random bytes of a K-quant tensor (gguf cannot quantise to K types) with small fp16 scales."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    rows, cols = shape
    rng = np.random.default_rng(cols * rows)
    raw = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
    scale = np.full((rows, cols // block, 1), 2e-4, np.float16).view(np.uint8)
    if qtype == gguf.GGMLQuantizationType.Q4_K:        # d, dmin first
        raw[..., 0:2] = scale
        raw[..., 2:4] = scale
    else:                                              # Q6_K: d last
        raw[..., -2:] = scale
    return raw.reshape(rows, -1)


def encode(w: np.ndarray, qtype):
    """``(data, raw_dtype)`` for GGUFWriter.add_tensor; 1-D tensors stay F32 as llama.cpp keeps them."""
    Q = gguf.GGMLQuantizationType
    if w.ndim == 1 or qtype == Q.F32:
        return w, None
    if qtype == Q.F16:
        return w.astype(np.float16), None
    if qtype in (Q.Q4_K, Q.Q6_K):
        return random_k_quant(w.shape, qtype), qtype
    return gguf.quants.quantize(w, qtype), qtype


def write(path, model, tokenizer: Tokenizer, arch: str = "llama", qtype=gguf.GGMLQuantizationType.F32,
          pre: str = "smollm", model_type: str = "gpt2", add_bos: bool = False, drop=(), extra_meta=None, tensors=None) -> str:
    """Write ``model`` + ``tokenizer`` as a GGUF file at ``path``; returns the path.

    ``tensors`` replaces the model's (llama.cpp names); a value ``(data, ggml type)`` is written as is.
    """
    c = model.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"])
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_vocab_size(c.vocab_size)
    for key, value in (extra_meta or {}).items():
        w.add_uint32(key, value) if isinstance(value, int) else w.add_string(key, value)
    vocab = tokenizer.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    w.add_tokenizer_model(model_type)
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    w.add_token_merges([" ".join(m) for m in tokenizer.model.get_merges()]
                       if hasattr(tokenizer.model, "get_merges") else _merges(tokenizer))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(add_bos)
    w.add_chat_template(TEMPLATE)
    for name, value in (tensors or gguf_tensors(model, arch)).items():
        if name in drop:
            continue
        data, raw = value if isinstance(value, tuple) else encode(value, qtype)
        w.add_tensor(name, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


def _merges(tokenizer: Tokenizer) -> list[str]:
    import json

    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    return [" ".join(m) if isinstance(m, list) else m for m in merges]


def folder_and_name(path: str) -> tuple[str, str]:
    return os.path.dirname(path), os.path.basename(path)
