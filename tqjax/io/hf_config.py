"""Hugging Face ``config.json`` -> `ModelConfig`: read what changes the math, refuse what tqjax lacks.

The policy. A config as shipped carries many fields that do not change what a forward pass
computes (bookkeeping, training, generation settings, ids of tokenizer specials, fields of older
transformers versions). Those are ignored. For each supported ``model_type``, `READ` lists the
fields of transformers' own config class that the forward does read; each is mapped to a
`ModelConfig` field, or checked, and a value tqjax does not implement raises an
`UnsupportedModelError` that names the field, the value and what is supported.

The raw dict is first normalised through transformers' own config class for its ``model_type``
(``CONFIG_MAPPING[model_type].from_dict``), so that every derived value is exactly transformers':
defaults, legacy spellings (``rope_scaling``/``rope_theta`` -> ``rope_parameters``, GPT-NeoX's
``rotary_pct``, Phi-3's ``"su"``/``"yarn"`` -> longrope), Gemma 3's ``layer_types`` from the legacy
``sliding_window_pattern`` and its ``rope_local_base_freq``, Qwen2/3's ``use_sliding_window`` and
``max_window_layers`` -> ``layer_types``, Gemma 1's legacy ``hidden_act="gelu"`` (the tanh GELU).
A field that transformers itself rejects is an error naming that field.

``tests/io/test_hf_policy.py`` checks the tables against the installed transformers: every field of
each supported config class, and every config attribute its modeling file reads, is either read
here or listed as ignored, so a field added by a new transformers version fails a test instead of
being ignored silently.
"""

from __future__ import annotations

import math

from tqjax.io.errors import CheckpointError, UnsupportedModelError
from tqjax.models.config import ModelConfig

# model_type -> our block layout. Types that transformers implements only through remote code are
# refused by name (they are not in transformers' CONFIG_MAPPING).
ARCH = {"gpt2": "gpt2", "gpt_neox": "neox", "llama": "llama", "mistral": "llama", "qwen2": "llama",
        "qwen3": "llama", "gemma": "llama", "gemma2": "llama", "gemma3_text": "llama", "phi3": "llama"}

_LLAMA = {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
          "head_dim", "intermediate_size", "max_position_embeddings", "rms_norm_eps", "hidden_act",
          "rope_parameters", "tie_word_embeddings"}
_GEMMA2 = (_LLAMA - {"hidden_act"}) | {"hidden_activation", "attention_bias", "query_pre_attn_scalar",
                                      "sliding_window", "layer_types", "attn_logit_softcapping",
                                      "final_logit_softcapping", "use_bidirectional_attention"}

# Per model_type: the fields (of transformers' normalised config) that change the forward pass.
# Each is mapped to ModelConfig or checked below. pad_token_id is here because a reward model
# reads its score at the last token that is not the pad id.
READ = {
    "gpt2": {"vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "activation_function",
             "layer_norm_epsilon", "scale_attn_weights", "scale_attn_by_inverse_layer_idx",
             "reorder_and_upcast_attn", "add_cross_attention", "tie_word_embeddings"},
    "gpt_neox": {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "max_position_embeddings", "layer_norm_eps", "hidden_act", "rope_parameters", "attention_bias",
                 "use_parallel_residual", "tie_word_embeddings", "head_dim"},
    "llama": _LLAMA | {"attention_bias", "mlp_bias"},
    "mistral": _LLAMA | {"sliding_window"},
    "qwen2": _LLAMA | {"sliding_window", "layer_types", "use_sliding_window", "max_window_layers"},
    "qwen3": _LLAMA | {"attention_bias", "sliding_window", "layer_types", "use_sliding_window", "max_window_layers"},
    "gemma": _LLAMA | {"attention_bias", "use_bidirectional_attention"},
    "gemma2": _GEMMA2,
    "gemma3_text": _GEMMA2,
    "phi3": _LLAMA | {"sliding_window", "original_max_position_embeddings"},
}
for _fields in READ.values():
    _fields |= {"architectures", "id2label", "label2id", "pad_token_id"}

# Fields that never change what a forward pass computes (in inference, with tqjax's own kernels).
IGNORED_ALL = {
    "transformers_version", "output_hidden_states", "output_attentions", "return_dict", "dtype", "torch_dtype",
    "chunk_size_feed_forward", "is_encoder_decoder", "problem_type", "use_cache", "initializer_range",
    "bos_token_id", "eos_token_id",          # mapped for tokenizing and the stop set, not math
    "attention_dropout", "hidden_dropout", "classifier_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop",
    "num_labels",                            # the classifier head's rows; a label picks one (`label_index`)
    "pretraining_tp",                        # a training-time split of the same matmul
    "_attn_implementation", "_experts_implementation",  # kernel choice, same math
}
IGNORED = {
    "gpt2": {"summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels",
             "summary_first_dropout", "summary_last_dropout"},   # the double-heads model's extra head
    "gpt_neox": {"is_decoder"},
    # transformers 5's Gemma 1 reads hidden_act only; hidden_activation is a leftover of 4.x configs
    "gemma": {"hidden_activation"},
    "phi3": set(),
}


def _error(field: str, value, supported: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"config field {field}={value!r} is not supported ({supported})")


def _normalise(raw: dict):
    """transformers' config object for ``raw`` (defaults, legacy spellings, derived fields)."""
    if not isinstance(raw, dict):
        raise CheckpointError(f"config.json must hold a JSON object, got {type(raw).__name__}")
    model_type = raw.get("model_type")
    if model_type == "gemma3":
        raise UnsupportedModelError("model_type 'gemma3' is the multimodal Gemma 3 (vision + text); tqjax reads "
                                    "text-only causal LMs: use a gemma3_text checkpoint (e.g. Gemma 3 1B)")
    from transformers import CONFIG_MAPPING

    if model_type not in ARCH:
        native = model_type in CONFIG_MAPPING
        hint = "" if native or "auto_map" not in raw else " (it exists only as remote code, which tqjax never runs)"
        raise UnsupportedModelError(f"unsupported model_type {model_type!r}{hint}; supported: {sorted(ARCH)}")
    try:
        return CONFIG_MAPPING[model_type].from_dict({k: v for k, v in raw.items() if k != "auto_map"})
    except Exception as e:   # transformers' strict validation: the message names the field
        raise CheckpointError(f"config.json is not a valid {model_type} config: {e}") from None


def labels(raw: dict) -> list[str]:
    """The label names of a classifier head, in row order (transformers' defaults when absent)."""
    hf = _normalise(raw)
    return [str(hf.id2label[i]) for i in range(hf.num_labels)]


def is_classifier(raw: dict) -> bool:
    return _kind(raw) == "reward"


def label_index(raw: dict, reward_label) -> int | None:
    """The row of ``score.weight`` that ``reward_label`` (a name from ``id2label`` or an int index)
    picks, None for a one-label head given no label; errors list the labels."""
    if not is_classifier(raw):
        if reward_label is not None:
            raise ValueError(f"reward_label={reward_label!r} was given but the checkpoint is a causal language model "
                             f"({(raw.get('architectures') or ['?'])[0]}), not a *ForSequenceClassification")
        return None
    names = labels(raw)
    listing = ", ".join(f"{i}={n!r}" for i, n in enumerate(names))
    if reward_label is None:
        if len(names) == 1:
            return None
        raise ValueError(f"the classifier has {len(names)} labels ({listing}); pick the one whose logit is the "
                         f"reward with reward_label= (a name or an index; CLI: --reward-label)")
    if isinstance(reward_label, int) and not isinstance(reward_label, bool):
        if 0 <= reward_label < len(names):
            return reward_label
        raise ValueError(f"reward_label={reward_label} is not a label index of this classifier ({listing})")
    if isinstance(reward_label, str) and reward_label in names:
        return names.index(reward_label)
    raise ValueError(f"reward_label={reward_label!r} is not a label of this classifier ({listing})")


def _kind(raw: dict) -> str:
    arch = (raw.get("architectures") or [""])[0]
    if arch.endswith("ForSequenceClassification"):
        return "reward"
    if arch and not arch.endswith(("ForCausalLM", "LMHeadModel")):
        raise UnsupportedModelError(f"unsupported architecture {arch!r}: expected a *ForCausalLM / *LMHeadModel "
                                    "or a *ForSequenceClassification")
    return "lm"


def _rope(params: dict, field: str, model_type: str, max_positions: int, fractional: bool) -> dict:
    """(theta, fraction, scaling spec) of one flat ``rope_parameters`` dict."""
    kind = params.get("rope_type", "default")
    fraction = float(params.get("partial_rotary_factor", 1.0))
    if fraction != 1.0 and not fractional:
        raise _error(f"{field}.partial_rotary_factor", fraction, f"{model_type} rotates the whole head: 1.0")
    if kind == "default":
        spec = ()
    elif kind == "linear":
        spec = ("linear", float(params["factor"]))
    elif kind == "llama3":
        spec = ("llama3", float(params["factor"]), float(params["low_freq_factor"]),
                float(params["high_freq_factor"]), int(params["original_max_position_embeddings"]))
    elif kind == "longrope":
        original = int(params["original_max_position_embeddings"])
        factor = params.get("factor")
        factor = max_positions / original if factor is None else float(factor)
        attention = params.get("attention_factor")
        if attention is None:
            attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
        spec = ("longrope", tuple(map(float, params["short_factor"])), tuple(map(float, params["long_factor"])),
                original, float(attention))
    else:
        raise _error(f"{field}.rope_type", kind, "supported: default, linear, llama3, longrope")
    return dict(rope_theta=float(params["rope_theta"]), rope_fraction=fraction, rope_scaling=spec)


def _token_ids(hf, vocab: int) -> dict:
    """bos / pad / the stop set; an id outside the vocabulary can never occur, so it is dropped
    (a pad id that never occurs reads a reward at the last token, as transformers does)."""
    def one(value):
        value = value[0] if isinstance(value, list) and value else value
        return value if isinstance(value, int) and 0 <= value < vocab else None

    eos = hf.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    return dict(bos_token_id=one(hf.bos_token_id), pad_token_id=one(hf.pad_token_id),
                eos_token_id=[i for i in eos if isinstance(i, int) and 0 <= i < vocab])


def _act(field: str, name: str) -> str:
    table = {"gelu": "gelu", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "gelu_fast": "gelu_new",
             "silu": "silu", "swish": "silu", "relu": "relu"}
    if name not in table:
        raise _error(field, name, f"supported: {', '.join(sorted(table))}")
    return table[name]


def _require(hf, field: str, allowed, why: str) -> None:
    value = getattr(hf, field, None)
    if value not in allowed:
        raise _error(field, value, why)


def _windows(window, types, max_positions: int) -> dict:
    """sliding_window and layer_types (() when every layer is alike; ``types`` None: every layer
    windowed); a window no shorter than the context is full attention."""
    if window is None or window >= max_positions:
        return dict(sliding_window=None, layer_types=())
    if types is None:
        return dict(sliding_window=int(window), layer_types=())
    names = {"full_attention": "full", "sliding_attention": "sliding"}
    odd = sorted(set(types) - names.keys())
    if odd:
        raise _error("layer_types", odd[0], "supported: full_attention, sliding_attention")
    types = tuple(names[t] for t in types)
    if "sliding" not in types:
        return dict(sliding_window=None, layer_types=())
    return dict(sliding_window=int(window), layer_types=() if set(types) == {"sliding"} else types)


def config_from_hf(raw: dict) -> ModelConfig:
    """Map a Hugging Face ``config.json`` dict to a `ModelConfig`, refusing only values of
    math-changing fields that tqjax does not implement (the error names field and value).

    ``auto_map`` alone is no reason to refuse: a type that transformers implements natively is read
    with tqjax's own code (remote code never runs). A classifier (``*ForSequenceClassification``)
    maps to ``kind="reward"`` with any number of labels; `label_index` picks the row.
    """
    if raw.get("trust_remote_code"):
        raise UnsupportedModelError("config.json asks for trust_remote_code; tqjax never runs remote code")
    hf = _normalise(raw)
    kind = _kind(raw)
    model_type = raw["model_type"]
    tokens = _token_ids(hf, hf.vocab_size)
    if model_type == "gpt2":
        _require(hf, "scale_attn_weights", (True,), "supported: true")
        _require(hf, "scale_attn_by_inverse_layer_idx", (False,), "supported: false")
        _require(hf, "add_cross_attention", (False,), "supported: false (a decoder without an encoder)")
        return ModelConfig.gpt2(vocab_size=hf.vocab_size, d_model=hf.n_embd, n_layers=hf.n_layer, n_heads=hf.n_head,
                                max_positions=hf.n_positions, kind=kind, mlp_dim=hf.n_inner,
                                norm_eps=hf.layer_norm_epsilon,
                                activation=_act("activation_function", hf.activation_function),
                                tie_embeddings=hf.tie_word_embeddings, **tokens)
    D, N = hf.hidden_size, hf.num_attention_heads
    max_positions = hf.max_position_embeddings
    if model_type == "gpt_neox":
        head_dim = getattr(hf, "head_dim", None) or D // N
        if head_dim * N != D:
            raise _error("head_dim", head_dim, f"GPT-NeoX heads split the width: hidden_size / num_attention_heads = {D // N}")
        bias = hf.attention_bias
        return ModelConfig(arch="neox", vocab_size=hf.vocab_size, d_model=D, n_layers=hf.num_hidden_layers,
                           n_heads=N, n_kv_heads=N, head_dim=head_dim, mlp_dim=hf.intermediate_size,
                           max_positions=max_positions, kind=kind, norm_eps=hf.layer_norm_eps,
                           activation=_act("hidden_act", hf.hidden_act), qkv_bias=bias, out_bias=bias, mlp_bias=True,
                           parallel_residual=hf.use_parallel_residual, tie_embeddings=hf.tie_word_embeddings,
                           **_rope(hf.rope_parameters, "rope_parameters", model_type, max_positions, True), **tokens)
    return ModelConfig(arch="llama", vocab_size=hf.vocab_size, d_model=D, n_layers=hf.num_hidden_layers,
                       n_heads=N, n_kv_heads=hf.num_key_value_heads or N,
                       head_dim=getattr(hf, "head_dim", None) or D // N, mlp_dim=hf.intermediate_size,
                       max_positions=max_positions, kind=kind, norm_eps=hf.rms_norm_eps,
                       tie_embeddings=hf.tie_word_embeddings, **_llama_family(hf, model_type, kind, max_positions),
                       **tokens)


def _llama_family(hf, model_type: str, kind: str, max_positions: int) -> dict:
    """The ModelConfig fields by which Llama, Mistral, Qwen2/3, Gemma 1/2/3 and Phi-3 differ."""
    gemma = model_type.startswith("gemma")
    act = "hidden_activation" if model_type in ("gemma2", "gemma3_text") else "hidden_act"
    out = dict(activation=_act(act, getattr(hf, act)))
    if gemma:
        _require(hf, "use_bidirectional_attention", (None, False), "supported: false (a causal decoder)")
        out.update(norm_offset=1.0, embed_scale=True)
    if model_type in ("gemma2", "gemma3_text"):
        out.update(sandwich_norms=True, attn_scale=float(hf.query_pre_attn_scalar) ** -0.5,
                   attn_softcap=_float(hf.attn_logit_softcapping),
                   final_softcap=_float(hf.final_logit_softcapping) if kind == "lm" else None)
    if model_type in ("qwen3", "gemma3_text"):
        out["qk_norm"] = True
    # q/k/v/o biases: Qwen2 has q/k/v biases always; Mistral and Phi-3 have none, whatever the file says
    bias = bool(hf.attention_bias) if model_type in ("llama", "qwen3") or gemma else False
    out.update(qkv_bias=bias or model_type == "qwen2", out_bias=bias,
               mlp_bias=bool(hf.mlp_bias) if model_type == "llama" else False)
    rope = hf.rope_parameters
    if model_type == "gemma3_text":
        local = rope.get("sliding_attention") or {}
        if local.get("rope_type", "default") != "default":
            raise _error("rope_parameters.sliding_attention.rope_type", local.get("rope_type"),
                         "Gemma 3's sliding layers: default (unscaled) RoPE")
        out["rope_local_theta"] = float(local["rope_theta"])
        rope = rope["full_attention"]
    out.update(_rope(rope, "rope_parameters", model_type, max_positions, fractional=model_type == "phi3"))
    if model_type in ("mistral", "phi3"):      # one window for every layer (their modeling reads no layer_types)
        out.update(_windows(hf.sliding_window, None, max_positions))
    elif model_type in ("qwen2", "qwen3", "gemma2", "gemma3_text"):
        out.update(_windows(hf.sliding_window, hf.layer_types, max_positions))
    return out


def _float(value):
    return None if value is None else float(value)
