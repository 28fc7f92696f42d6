"""Load a local BERT folder (``model_type: bert``, e.g. SimCSE, sentence-transformers' MiniLM) as an `Encoder`.

The same strict rules as the decoder importer (`tqjax.io.hf`): one key table, every shape asserted,
unknown or unused tensors and unhandled config fields raise, safetensors only, no remote code,
never a download. A sentence-transformers folder also says how to pool (``modules.json``,
``1_Pooling/config.json``) and where to truncate (``sentence_bert_config.json``).
"""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
import numpy as np

from tqjax.io.errors import CheckpointError, UnsupportedModelError
from tqjax.io.hf import check_folder, read_all_tensors, read_hf_config
from tqjax.models.bert import POOLINGS, BertConfig, Encoder, param_shapes

# Fields that never change what BertModel's forward pass computes.
HARMLESS = {
    "architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "use_cache", "initializer_range",
    "pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "attention_probs_dropout_prob",
    "hidden_dropout_prob", "classifier_dropout", "gradient_checkpointing", "tie_word_embeddings", "return_dict",
    "output_attentions", "output_hidden_states", "tokenizer_class", "id2label", "label2id", "num_labels",
    "problem_type", "chunk_size_feed_forward", "torchscript", "pruned_heads", "finetuning_task",
}
REQUIRED = {"position_embedding_type": "absolute", "is_decoder": False, "add_cross_attention": False}
MAPPED = {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
          "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "hidden_act"}
BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")

ST_MODULES = {"sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
              "sentence_transformers.models.Normalize"}
ST_POOLING = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean"}
ST_POOLING_UNSUPPORTED = ("pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                          "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")


def bert_config_from_hf(raw: dict, pooler: bool) -> BertConfig:
    """Map a BERT ``config.json`` to a `BertConfig`, refusing what tqjax does not implement."""
    if "auto_map" in raw or raw.get("trust_remote_code"):
        raise UnsupportedModelError("config.json asks for remote code (auto_map); tqjax never runs remote code")
    if raw.get("model_type") != "bert":
        raise UnsupportedModelError(f"a sentence encoder must have model_type 'bert', got {raw.get('model_type')!r}")
    arch = raw.get("architectures") or ["BertModel"]
    if arch != ["BertModel"]:
        raise UnsupportedModelError(f"unsupported encoder architecture {arch!r}: expected the bare encoder "
                                    "['BertModel'] (save it with BertModel.save_pretrained)")
    for key, value in REQUIRED.items():
        if key in raw and raw[key] != value:
            raise UnsupportedModelError(f"config field {key}={raw[key]!r} is not supported for a bert encoder "
                                        f"(needs {value!r})")
    unknown = sorted(k for k in raw if not k.startswith("_") and k not in HARMLESS | MAPPED | REQUIRED.keys())
    if unknown:
        raise UnsupportedModelError(f"unhandled config field(s) for bert: {', '.join(unknown)}")
    act = raw.get("hidden_act", "gelu")
    if act not in ("gelu", "gelu_new", "relu", "silu"):
        raise UnsupportedModelError(f"unsupported hidden_act {act!r} for bert (supported: gelu, gelu_new, relu, silu)")
    try:
        return BertConfig(vocab_size=raw["vocab_size"], d_model=raw["hidden_size"], n_layers=raw["num_hidden_layers"],
                          n_heads=raw["num_attention_heads"], mlp_dim=raw["intermediate_size"],
                          max_positions=raw["max_position_embeddings"], type_vocab_size=raw.get("type_vocab_size", 2),
                          norm_eps=raw.get("layer_norm_eps", 1e-12), activation=act, pooler=pooler)
    except KeyError as e:
        raise CheckpointError(f"config.json lacks the field {e.args[0]!r} that a bert encoder needs") from None
    except ValueError as e:
        raise UnsupportedModelError(f"config.json does not describe a valid bert encoder: {e}") from None


def _norm(prefix: str, ours: tuple, D: int) -> list:
    return [(f"{prefix}.weight", (D,), ours + ("scale",), lambda w: w),
            (f"{prefix}.bias", (D,), ours + ("bias",), lambda w: w)]


def key_table(cfg: BertConfig) -> list[tuple[str, tuple, tuple, object]]:
    """(Hugging Face name, its shape, our path, convert) for every tensor of the encoder."""
    D, N, H, F = cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.mlp_dim
    heads_in = lambda w: w.T.reshape(D, N, H)       # noqa: E731  (out, in) -> [D, N, H]
    heads_bias = lambda w: w.reshape(N, H)          # noqa: E731
    out = [("embeddings.word_embeddings.weight", (cfg.vocab_size, D), ("embed_VD",), lambda w: w),
           ("embeddings.position_embeddings.weight", (cfg.max_positions, D), ("pos_PD",), lambda w: w),
           ("embeddings.token_type_embeddings.weight", (cfg.type_vocab_size, D), ("type_YD",), lambda w: w)]
    out += _norm("embeddings.LayerNorm", ("embed_norm",), D)
    for i in range(cfg.n_layers):
        p, L = f"encoder.layer.{i}", ("layers", i)
        for hf, ours in (("query", "q"), ("key", "k"), ("value", "v")):
            out += [(f"{p}.attention.self.{hf}.weight", (D, D), L + (f"{ours}_DNH",), heads_in),
                    (f"{p}.attention.self.{hf}.bias", (D,), L + (f"{ours}_NH",), heads_bias)]
        out += [(f"{p}.attention.output.dense.weight", (D, D), L + ("o_NHD",), lambda w: w.T.reshape(N, H, D)),
                (f"{p}.attention.output.dense.bias", (D,), L + ("o_D",), lambda w: w),
                (f"{p}.intermediate.dense.weight", (F, D), L + ("up_DF",), lambda w: w.T),
                (f"{p}.intermediate.dense.bias", (F,), L + ("up_F",), lambda w: w),
                (f"{p}.output.dense.weight", (D, F), L + ("down_FD",), lambda w: w.T),
                (f"{p}.output.dense.bias", (D,), L + ("down_D",), lambda w: w)]
        out += _norm(f"{p}.attention.output.LayerNorm", L + ("attn_norm",), D)
        out += _norm(f"{p}.output.LayerNorm", L + ("mlp_norm",), D)
    if cfg.pooler:
        out += [("pooler.dense.weight", (D, D), ("pooler_DD",), lambda w: w.T),
                ("pooler.dense.bias", (D,), ("pooler_D",), lambda w: w)]
    return out


def convert(cfg: BertConfig, tensors: dict[str, np.ndarray]) -> dict:
    """Our float32 parameter tree from a flat dict of Hugging Face tensors (strict: names and shapes)."""
    named = {name: value for name, value in tensors.items() if name not in BUFFERS}
    table = key_table(cfg)
    expected = {name for name, _, _, _ in table}
    missing, unexpected = sorted(expected - named.keys()), sorted(named.keys() - expected)
    if missing:
        raise CheckpointError(f"missing tensor(s): {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else ""))
    if unexpected:
        raise CheckpointError(f"unexpected tensor(s): {', '.join(unexpected[:8])}"
                              + (" ..." if len(unexpected) > 8 else ""))
    flat = {}
    for name, shape, path, fn in table:
        value = named[name]
        if tuple(value.shape) != shape:
            raise CheckpointError(f"tensor {name} has shape {tuple(value.shape)}, expected {shape}")
        if not np.issubdtype(value.dtype, np.floating) and value.dtype.name != "bfloat16":
            raise CheckpointError(f"tensor {name} has dtype {value.dtype}, expected a floating-point type")
        flat[path] = np.array(fn(np.asarray(value)), np.float32)     # a copy: never aliases the file

    def build(node, path):
        if isinstance(node, dict):
            return {k: build(v, path + (k,)) for k, v in node.items()}
        if isinstance(node, list):
            return [build(v, path + (i,)) for i, v in enumerate(node)]
        assert flat[path].shape == node, (path, flat[path].shape, node)
        return jnp.asarray(flat[path])

    return build(param_shapes(cfg), ())


def _read_json(file: str):
    try:
        with open(file) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from None


def sentence_transformers_settings(path: str) -> dict:
    """``pooling``, ``max_length`` and ``lowercase`` declared by a sentence-transformers folder ({} if none).

    Only Transformer (weights in the folder itself), Pooling (CLS or mean) and Normalize modules are
    implemented; Normalize does not change a cosine. Anything else raises.
    """
    modules_file = os.path.join(path, "modules.json")
    if not os.path.isfile(modules_file):
        return {}
    modules = _read_json(modules_file)
    if not isinstance(modules, list) or not all(isinstance(m, dict) and "type" in m for m in modules):
        raise CheckpointError(f"{modules_file}: expected a list of modules with a \"type\"")
    kinds = [m["type"] for m in modules]
    others = [k for k in kinds if k not in ST_MODULES]
    if others:
        raise UnsupportedModelError(f"{modules_file}: module {others[0]!r} is not supported (tqjax implements "
                                    "Transformer, Pooling and Normalize)")
    if kinds[:1] != ["sentence_transformers.models.Transformer"] or modules[0].get("path", "") != "":
        raise UnsupportedModelError(f"{modules_file}: the first module must be the Transformer, stored in the "
                                    "folder itself")
    settings = {}
    pooling_modules = [m for m in modules if m["type"].endswith(".Pooling")]
    if len(pooling_modules) != 1:
        raise UnsupportedModelError(f"{modules_file}: expected exactly one Pooling module, "
                                    f"found {len(pooling_modules)}")
    settings["pooling"] = _st_pooling(os.path.join(path, pooling_modules[0].get("path", ""), "config.json"))
    st_file = os.path.join(path, "sentence_bert_config.json")
    if os.path.isfile(st_file):
        st = _read_json(st_file)
        unknown = sorted(set(st) - {"max_seq_length", "do_lower_case"})
        if unknown:
            raise UnsupportedModelError(f"{st_file}: unhandled field(s) {', '.join(unknown)}")
        if st.get("max_seq_length") is not None:
            settings["max_length"] = int(st["max_seq_length"])
        settings["lowercase"] = bool(st.get("do_lower_case", False))
    return settings


def _st_pooling(file: str) -> str:
    if not os.path.isfile(file):
        raise CheckpointError(f"{file}: the Pooling module's config is missing")
    raw = _read_json(file)
    known = set(ST_POOLING) | set(ST_POOLING_UNSUPPORTED) | {"word_embedding_dimension", "include_prompt"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UnsupportedModelError(f"{file}: unhandled pooling field(s) {', '.join(unknown)}")
    unsupported = [k for k in ST_POOLING_UNSUPPORTED if raw.get(k)]
    if unsupported:
        raise UnsupportedModelError(f"{file}: {unsupported[0]} is not supported (tqjax pools by CLS or mean)")
    modes = [mode for key, mode in ST_POOLING.items() if raw.get(key)]
    if len(modes) != 1:
        raise UnsupportedModelError(f"{file}: expected exactly one of pooling_mode_cls_token / "
                                    f"pooling_mode_mean_tokens, got {len(modes)}")
    return modes[0]


def load_bert(path: str, pooling: str | None = None) -> Encoder:
    """An `Encoder` from a local BERT folder (never downloads).

    ``pooling`` (``cls``, ``pooler`` or ``mean``) overrides the folder's; a plain BERT folder without
    sentence-transformers files must be given one (SimCSE: ``cls``, or ``pooler`` for supervised
    SimCSE's trained head).
    """
    path = os.path.abspath(os.fspath(path))
    check_folder(path)
    raw = read_hf_config(path)
    settings = sentence_transformers_settings(path)
    if pooling is not None and pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    pooling = pooling or settings.get("pooling")
    if pooling is None:
        raise ValueError(f"{path}: no sentence-transformers pooling config (modules.json); give the pooling "
                         f"explicitly, one of {POOLINGS} (SimCSE: cls)")
    tensors = read_all_tensors(path)
    config = bert_config_from_hf(raw, pooler="pooler.dense.weight" in tensors or "pooler.dense.bias" in tensors)
    params = convert(config, tensors)
    max_length = min(settings.get("max_length", config.max_positions), config.max_positions)
    return Encoder(params=params, config=config, pooling=pooling, tokenizer=_tokenizer(path),
                   max_length=max_length, lowercase=settings.get("lowercase", False))


def _tokenizer(path: str):
    if not any(os.path.isfile(os.path.join(path, f)) for f in TOKENIZER_FILES):
        raise CheckpointError(f"{path}: no tokenizer (tokenizer.json or vocab.txt); an encoder needs its tokenizer")
    import transformers

    return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
