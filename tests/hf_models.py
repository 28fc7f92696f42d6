"""Random tiny PyTorch `transformers` models of every supported architecture, for parity tests."""

from __future__ import annotations

import torch
import transformers

VOCAB = 61
PAD = 0

COMMON = dict(vocab_size=VOCAB, pad_token_id=PAD, bos_token_id=1, eos_token_id=2)
LLAMA = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=64, max_position_embeddings=128, **COMMON)

CONFIGS = {
    "gpt2": lambda: transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128, **COMMON),
    "llama": lambda: transformers.LlamaConfig(**LLAMA, attention_bias=True, mlp_bias=True),
    "llama-mqa-headdim": lambda: transformers.LlamaConfig(**{**LLAMA, "num_key_value_heads": 1}, head_dim=12,
                                                          tie_word_embeddings=True),
    "llama3-rope": lambda: transformers.LlamaConfig(**LLAMA, rope_parameters=dict(
        rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=16)),
    "mistral": lambda: transformers.MistralConfig(**LLAMA, sliding_window=None),
    "qwen2": lambda: transformers.Qwen2Config(**LLAMA),
    "mistral-window": lambda: transformers.MistralConfig(**LLAMA, sliding_window=4),
    "qwen3": lambda: transformers.Qwen3Config(**LLAMA, head_dim=8),
    "gemma": lambda: transformers.GemmaConfig(**LLAMA, head_dim=8),
    "gemma2": lambda: transformers.Gemma2Config(**LLAMA, head_dim=8, sliding_window=4, query_pre_attn_scalar=12,
                                                attn_logit_softcapping=5.0, final_logit_softcapping=3.0),
    "gemma3": lambda: transformers.Gemma3TextConfig(**LLAMA, head_dim=8, sliding_window=4, query_pre_attn_scalar=12,
                                                    sliding_window_pattern=2, rope_scaling=dict(rope_type="linear", factor=8.0)),
    "phi3": lambda: transformers.Phi3Config(**LLAMA, sliding_window=5, original_max_position_embeddings=64, rope_parameters=dict(
        rope_type="longrope", rope_theta=10000.0, short_factor=[1.0, 1.5, 2.0, 1.1], long_factor=[3.0, 4.0, 5.0, 6.0],
        original_max_position_embeddings=64)),
    "neox": lambda: transformers.GPTNeoXConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                               intermediate_size=64, max_position_embeddings=128, **COMMON),
    "neox-sequential": lambda: transformers.GPTNeoXConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                          intermediate_size=64, max_position_embeddings=128,
                                                          use_parallel_residual=False, partial_rotary_factor=0.5, **COMMON),
}


def build(name: str, kind: str = "lm", seed: int = 0, dtype=torch.float32):
    """A random HF model with every parameter perturbed (biases and norms included)."""
    torch.manual_seed(seed)
    config = CONFIGS[name]()
    if kind == "reward":
        config.num_labels = 1
        model = transformers.AutoModelForSequenceClassification.from_config(config)
    else:
        model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.to(dtype).eval()


def save(model, path) -> str:
    model.save_pretrained(path, safe_serialization=True)
    return str(path)


def build_classifier(name: str, labels: list[str], seed: int = 0):
    """A random ``*ForSequenceClassification`` with one head row per label (``id2label`` set)."""
    torch.manual_seed(seed)
    config = CONFIGS[name]()
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    model = transformers.AutoModelForSequenceClassification.from_config(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()
