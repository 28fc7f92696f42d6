"""Hugging Face ``config.json`` -> `ModelConfig`, strictly: unknown settings that change the math raise."""

from __future__ import annotations

from tqjax.io.errors import UnsupportedModelError
from tqjax.models.config import ModelConfig

MODEL_TYPES = {"gpt2": "gpt2", "llama": "llama", "mistral": "llama", "qwen2": "llama", "gpt_neox": "neox"}

# Fields that never change what a forward pass computes (bookkeeping, training-only, generation).
HARMLESS = {
    "architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "use_cache",
    "initializer_range", "id2label", "label2id", "num_labels", "problem_type", "tokenizer_class",
    "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id",
    "return_dict", "output_attentions", "output_hidden_states", "is_decoder", "is_encoder_decoder",
    "add_cross_attention", "chunk_size_feed_forward", "task_specific_params", "prefix",
    "attention_dropout", "hidden_dropout", "attn_pdrop", "embd_pdrop", "resid_pdrop",
    "summary_activation", "summary_first_dropout", "summary_proj_to_labels", "summary_type",
    "summary_use_proj", "classifier_dropout", "max_length", "min_length", "do_sample", "num_beams",
    "temperature", "top_k", "top_p", "repetition_penalty", "pretraining_tp", "use_bfloat16",
    "tie_encoder_decoder", "finetuning_task", "pruned_heads", "torchscript", "bad_words_ids",
    "n_ctx", "max_window_layers", "layer_types", "is_composition", "output_scores", "cross_attention_hidden_size",
}

# Per model type: field -> value it must have (anything else changes the math we implement).
REQUIRED = {
    "gpt2": {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False},
    "llama": {},
    "mistral": {},
    "qwen2": {"use_sliding_window": False},
    "gpt_neox": {"use_bfloat16": False},
}

MAPPED = {
    "gpt2": {"vocab_size", "n_embd", "n_layer", "n_head", "n_positions", "layer_norm_epsilon",
             "activation_function", "tie_word_embeddings", "reorder_and_upcast_attn", "n_inner"},
    "llama": {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "head_dim", "intermediate_size", "max_position_embeddings", "rms_norm_eps", "hidden_act",
              "rope_theta", "rope_scaling", "rope_parameters", "attention_bias", "mlp_bias",
              "tie_word_embeddings", "sliding_window"},
    "gpt_neox": {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "max_position_embeddings", "layer_norm_eps", "hidden_act", "rotary_pct", "rotary_emb_base",
                 "rope_theta", "rope_scaling", "rope_parameters", "partial_rotary_factor", "attention_bias",
                 "use_parallel_residual", "tie_word_embeddings"},
}
MAPPED["mistral"] = MAPPED["llama"]
MAPPED["qwen2"] = MAPPED["llama"]


def _kind(raw: dict) -> str:
    arch = (raw.get("architectures") or [""])[0]
    if arch.endswith("ForSequenceClassification"):
        labels = raw.get("num_labels", len(raw.get("id2label") or {}) or 2)
        if labels != 1:
            raise UnsupportedModelError(f"{arch} has {labels} labels; a reward model needs exactly one (num_labels=1)")
        return "reward"
    if arch and not arch.endswith(("ForCausalLM", "LMHeadModel")):
        raise UnsupportedModelError(f"unsupported architecture {arch!r}: expected a *ForCausalLM / *LMHeadModel "
                                    "or a one-label *ForSequenceClassification")
    return "lm"


def _rope(raw: dict, default_fraction: float) -> dict:
    params = dict(raw.get("rope_parameters") or {})
    scaling = raw.get("rope_scaling") or {}
    if scaling:
        params.update(scaling)
    theta = params.get("rope_theta", raw.get("rope_theta", raw.get("rotary_emb_base", 10000.0)))
    fraction = params.get("partial_rotary_factor", raw.get("partial_rotary_factor", raw.get("rotary_pct", default_fraction)))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        spec = ()
    elif kind == "linear":
        spec = ("linear", float(params["factor"]))
    elif kind == "llama3":
        spec = ("llama3", float(params["factor"]), float(params["low_freq_factor"]),
                float(params["high_freq_factor"]), int(params["original_max_position_embeddings"]))
    else:
        raise UnsupportedModelError(f"unsupported rope scaling type {kind!r} (supported: default, linear, llama3)")
    return dict(rope_theta=float(theta), rope_fraction=float(fraction), rope_scaling=spec)


def _token(raw: dict, name: str):
    value = raw.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    return value


def config_from_hf(raw: dict) -> ModelConfig:
    """Map a Hugging Face config dict to a `ModelConfig`, refusing what tqjax does not implement."""
    if "auto_map" in raw or raw.get("trust_remote_code"):
        raise UnsupportedModelError("config.json asks for remote code (auto_map); tqjax never runs remote code")
    model_type = raw.get("model_type")
    if model_type not in MODEL_TYPES:
        raise UnsupportedModelError(f"unsupported model_type {model_type!r}; supported: {sorted(MODEL_TYPES)}")
    for key, value in REQUIRED[model_type].items():
        if key in raw and raw[key] != value:
            raise UnsupportedModelError(f"config field {key}={raw[key]!r} is not supported for {model_type} (needs {value!r})")
    unknown = sorted(k for k in raw if not k.startswith("_") and k not in HARMLESS | MAPPED[model_type] | REQUIRED[model_type].keys())
    if unknown:
        raise UnsupportedModelError(f"unhandled config field(s) for {model_type}: {', '.join(unknown)}")
    kind = _kind(raw)
    tokens = {name: _token(raw, name) for name in ("bos_token_id", "pad_token_id")}
    tokens["eos_token_id"] = raw.get("eos_token_id")    # the whole list: every id stops
    if model_type == "gpt2":
        act = raw.get("activation_function", "gelu_new")
        return ModelConfig.gpt2(vocab_size=raw["vocab_size"], d_model=raw["n_embd"], n_layers=raw["n_layer"],
                                n_heads=raw["n_head"], max_positions=raw["n_positions"], kind=kind, mlp_dim=raw.get("n_inner"),
                                norm_eps=raw.get("layer_norm_epsilon", 1e-5), activation=_act(act),
                                tie_embeddings=raw.get("tie_word_embeddings", True), **tokens)
    if model_type == "gpt_neox":
        D, N = raw["hidden_size"], raw["num_attention_heads"]
        bias = raw.get("attention_bias", True)
        return ModelConfig(arch="neox", vocab_size=raw["vocab_size"], d_model=D, n_layers=raw["num_hidden_layers"],
                           n_heads=N, n_kv_heads=N, head_dim=D // N, mlp_dim=raw["intermediate_size"],
                           max_positions=raw["max_position_embeddings"], kind=kind,
                           norm_eps=raw.get("layer_norm_eps", 1e-5), activation=_act(raw.get("hidden_act", "gelu")),
                           qkv_bias=bias, out_bias=bias, mlp_bias=True,
                           parallel_residual=raw.get("use_parallel_residual", True),
                           tie_embeddings=raw.get("tie_word_embeddings", False), **_rope(raw, 0.25), **tokens)
    D, N = raw["hidden_size"], raw["num_attention_heads"]
    max_positions = raw["max_position_embeddings"]
    window = raw.get("sliding_window")
    if window is not None and model_type == "mistral":
        max_positions = min(max_positions, window)   # within the window, sliding attention is full attention
    bias = raw.get("attention_bias", False)
    return ModelConfig(arch="llama", vocab_size=raw["vocab_size"], d_model=D, n_layers=raw["num_hidden_layers"],
                       n_heads=N, n_kv_heads=raw.get("num_key_value_heads") or N,
                       head_dim=raw.get("head_dim") or D // N, mlp_dim=raw["intermediate_size"],
                       max_positions=max_positions, kind=kind, norm_eps=raw.get("rms_norm_eps", 1e-6),
                       activation=_act(raw.get("hidden_act", "silu")),
                       qkv_bias=True if model_type == "qwen2" else bias, out_bias=bias,
                       mlp_bias=raw.get("mlp_bias", False), tie_embeddings=raw.get("tie_word_embeddings", False),
                       **_rope(raw, 1.0), **tokens)


def _act(name: str) -> str:
    table = {"gelu": "gelu", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "silu": "silu",
             "swish": "silu", "relu": "relu"}
    if name not in table:
        raise UnsupportedModelError(f"unsupported activation {name!r}; supported: {sorted(table)}")
    return table[name]
