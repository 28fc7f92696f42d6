"""Real config.json files as shipped (tests/io/configs): what they map to, and tiny models built from
them with every field as shipped and only the sizes shrunk, against transformers."""

import json
import math
import os

import numpy as np
import pytest
import torch
import transformers

import tqjax
from tqjax.io import config_from_hf

ROOT = os.path.join(os.path.dirname(__file__), "configs")
NAMES = sorted(n for n in os.listdir(ROOT) if os.path.isfile(os.path.join(ROOT, n, "config.json")))


def raw(name: str) -> dict:
    with open(os.path.join(ROOT, name, "config.json")) as f:
        return json.load(f)


GEMMA3_TYPES = ("sliding",) * 5 + ("full",)
GEMMA2_TYPES = ("sliding", "full")
EXPECTED = {   # (n_heads, n_kv_heads, head_dim, sliding_window, layer_types, rope_theta, rope kind, eos, pad)
    "gpt2": (12, 12, 64, None, (), 10000.0, None, (50256,), None),
    "llama-2-7b-chat": (32, 32, 128, None, (), 10000.0, None, (2,), None),
    "llama-3.1-8b": (32, 8, 128, None, (), 500000.0, "llama3", (128001,), None),
    "llama-3.2-3b": (24, 8, 128, None, (), 500000.0, "llama3", (128001,), None),
    "qwen2.5-3b": (16, 2, 128, None, (), 1e6, None, (151643,), None),
    "qwen2.5-7b": (28, 4, 128, None, (), 1e6, None, (151643,), None),
    "qwen3-4b": (32, 8, 128, None, (), 5e6, None, (151645,), None),
    "qwen3-8b": (32, 8, 128, None, (), 1e6, None, (151645,), None),
    "gemma-3-1b-it": (4, 1, 256, 512, GEMMA3_TYPES * 4 + GEMMA3_TYPES[:2], 1e6, None, (1, 106), 0),
    "phi-3-mini-4k-instruct": (32, 32, 96, 2047, (), 10000.0, None, (32000,), 32000),
    "phi-3-medium-4k-instruct": (40, 10, 128, 2047, (), 10000.0, None, (32000,), 32000),
    "phi-3-vision-128k-text": (32, 32, 96, None, (), 10000.0, "longrope", (2,), 32000),   # Phi3Config's default pad
    "phi-3.5-mini-instruct": (32, 32, 96, None, (), 10000.0, "longrope", (32000,), 32000),  # window 262144 > context
    "mistral-7b-v0.1": (32, 8, 128, 4096, (), 10000.0, None, (2,), None),
    "mistral-7b-v0.3": (32, 8, 128, None, (), 1e6, None, (2,), None),
    "pythia-1b": (8, 8, 256, None, (), 10000.0, None, (0,), None),
    "gemma-2b": (8, 1, 256, None, (), 10000.0, None, (1,), 0),
    "gemma-2-2b": (8, 4, 256, 4096, GEMMA2_TYPES * 13, 10000.0, None, (1,), 0),
    "gemma-2-2b-it": (8, 4, 256, 4096, GEMMA2_TYPES * 13, 10000.0, None, (1, 107), 0),
    "gemma-2-9b": (16, 8, 256, 4096, GEMMA2_TYPES * 21, 10000.0, None, (1,), 0),
    "gemma-2-9b-it": (16, 8, 256, 4096, GEMMA2_TYPES * 21, 10000.0, None, (1,), 0),
    "gemma-3-270m": (4, 1, 256, 512, GEMMA3_TYPES * 3, 1e6, None, (1,), 0),
    "gpt2-medium": (16, 16, 64, None, (), 10000.0, None, (50256,), None),
    "smollm2-135m": (9, 3, 64, None, (), 1e5, None, (2,), 2),
    "tinyllama-1.1b-chat-v1.0": (32, 4, 64, None, (), 10000.0, None, (2,), None),
    "llama-3.1-8b-instruct": (32, 8, 128, None, (), 500000.0, "llama3", (128001, 128008, 128009), None),
}


def test_every_fixture_has_expectations():
    assert sorted(EXPECTED) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_fixture_maps(name):
    c = config_from_hf(raw(name))
    heads, kv, head_dim, window, types, theta, rope, eos, pad = EXPECTED[name]
    assert (c.n_heads, c.n_kv_heads, c.head_dim, c.sliding_window, c.layer_types) == (heads, kv, head_dim, window, types)
    assert (c.rope_theta, c.rope_scaling[0] if c.rope_scaling else None) == (theta, rope)
    assert (c.eos_token_id, c.pad_token_id, c.kind) == (eos, pad, "lm")


def test_family_flags():
    gemma = config_from_hf(raw("gemma-3-1b-it"))
    assert (gemma.qk_norm, gemma.norm_offset, gemma.embed_scale, gemma.sandwich_norms) == (True, 1.0, True, True)
    assert (gemma.attn_scale, gemma.attn_softcap, gemma.final_softcap, gemma.rope_local_theta) == (256 ** -0.5, None, None, 1e4)
    assert gemma.activation == "gelu_new" and gemma.tie_embeddings
    assert config_from_hf(raw("qwen3-8b")).qk_norm and not config_from_hf(raw("qwen2.5-7b")).qk_norm
    assert config_from_hf(raw("qwen2.5-7b")).qkv_bias and not config_from_hf(raw("qwen2.5-7b")).out_bias
    assert config_from_hf(raw("llama-3.1-8b")).rope_scaling == ("llama3", 8.0, 1.0, 4.0, 8192)
    for name, scalar in (("gemma-2-2b", 256), ("gemma-2-2b-it", 256), ("gemma-2-9b", 256), ("gemma-2-9b-it", 256)):   # 9B: 256 too (27B: 144)
        g2 = config_from_hf(raw(name))
        assert (g2.attn_softcap, g2.final_softcap, g2.attn_scale) == (50.0, 30.0, scalar ** -0.5)
        assert (g2.norm_offset, g2.embed_scale, g2.sandwich_norms, g2.qk_norm) == (1.0, True, True, False)
        assert g2.activation == "gelu_new" and g2.tie_embeddings and g2.rope_local_theta is None
    g1 = config_from_hf(raw("gemma-2b"))    # Gemma 1: legacy hidden_act "gelu" is the tanh GELU in transformers 5
    assert (g1.activation, g1.norm_offset, g1.embed_scale, g1.sandwich_norms, g1.attn_softcap) == ("gelu_new", 1.0, True, False, None)
    g270 = config_from_hf(raw("gemma-3-270m"))
    assert (g270.qk_norm, g270.sandwich_norms, g270.rope_local_theta, g270.attn_scale) == (True, True, 1e4, 256 ** -0.5)
    neox = config_from_hf(raw("pythia-1b"))
    assert (neox.arch, neox.rope_fraction, neox.parallel_residual, neox.tie_embeddings) == ("neox", 0.25, True, False)
    assert (neox.qkv_bias, neox.out_bias, neox.mlp_bias, neox.activation) == (True, True, True, "gelu")
    assert config_from_hf(raw("smollm2-135m")).tie_embeddings and not config_from_hf(raw("tinyllama-1.1b-chat-v1.0")).tie_embeddings
    gpt2m = config_from_hf(raw("gpt2-medium"))
    assert (gpt2m.d_model, gpt2m.n_layers, gpt2m.max_positions, gpt2m.activation) == (1024, 24, 1024, "gelu_new")


def test_phi35_longrope_as_transformers_computes_it():
    kind, short, long, original, attention = config_from_hf(raw("phi-3.5-mini-instruct")).rope_scaling
    cfg = raw("phi-3.5-mini-instruct")["rope_scaling"]
    assert (kind, len(short), len(long), original) == ("longrope", 48, 48, 4096)
    assert (short, long) == (tuple(cfg["short_factor"]), tuple(cfg["long_factor"]))
    assert attention == pytest.approx(math.sqrt(1 + math.log(131072 / 4096) / math.log(4096)))


def test_legacy_su_longrope_as_transformers_computes_it():
    _, short, long, original, attention = config_from_hf(raw("phi-3-vision-128k-text")).rope_scaling
    cfg = raw("phi-3-vision-128k-text")["rope_scaling"]
    assert (short, long, original) == (tuple(cfg["short_factor"]), tuple(cfg["long_factor"]), 4096)
    assert attention == pytest.approx(math.sqrt(1 + math.log(131072 / 4096) / math.log(4096)))


def test_stop_list_and_pad_id_of_the_generation_config(tmp_path):
    """The stop set is generation_config.json's eos_token_id; a pad id only the generation config has
    (as Qwen2.5 ships) is not the reward model's pad: transformers' classifier reads config.json's."""
    from tqjax.io.hf import read_stop_ids

    (tmp_path / "generation_config.json").write_text("""{
  "bos_token_id": 151643,
  "pad_token_id": 151643,
  "do_sample": true,
  "eos_token_id": [
    151645,
    151643
  ],
  "repetition_penalty": 1.05,
  "temperature": 0.7,
  "top_p": 0.8,
  "top_k": 20,
  "transformers_version": "4.37.0"
}""")   # Qwen/Qwen2.5-7B-Instruct's file as shipped (its config.json is not among the fixtures)
    config = read_stop_ids(str(tmp_path), config_from_hf(raw("qwen2.5-7b")))
    assert config.eos_token_id == (151643, 151645) and config.pad_token_id is None


GENERATION = sorted(n for n in NAMES if os.path.isfile(os.path.join(ROOT, n, "generation_config.json")))


def test_generation_configs_are_stored():
    assert GENERATION == ["gemma-2-9b-it", "llama-3.1-8b-instruct"]


@pytest.mark.parametrize("name,stops", [("llama-3.1-8b-instruct", (128001, 128008, 128009)), ("gemma-2-9b-it", (1,))])
def test_stop_set_is_the_shipped_generation_configs_eos_list(name, stops):
    """An eos list (Llama 3.1) and a single int (Gemma 2 9B-it's early file) as shipped."""
    from tqjax.io.hf import read_stop_ids

    with open(os.path.join(ROOT, name, "generation_config.json")) as f:
        eos = json.load(f)["eos_token_id"]
    config = read_stop_ids(os.path.join(ROOT, name), config_from_hf(raw(name)))
    assert config.eos_token_id == tuple(sorted(eos if isinstance(eos, list) else [eos])) == stops
    # with only config.json's spelling of the same list, the same set
    assert config_from_hf(raw(name)).eos_token_id == config.eos_token_id


# --- parity: each real config with only its sizes shrunk --------------------------------------

def shrink(cfg: dict) -> dict:
    """Sizes only: width, layers, heads (keeping the GQA ratio's kind), vocab, window, context,
    longrope factor lists cut to rotary_dim / 2. Token ids move into the small vocabulary (a pad id
    is set where the class default would lie outside it); the storage dtype becomes float32."""
    cfg = dict(cfg)
    heads = cfg.get("num_attention_heads", cfg.get("n_head"))
    kv = cfg.get("num_key_value_heads") or heads
    N, K = 4, (4 if kv == heads else 1 if kv == 1 else 2)
    if cfg["model_type"] == "gpt2":
        cfg.update(n_embd=32, n_layer=2, n_head=4, n_positions=64, n_ctx=64)
    else:
        layers = 6 if cfg["model_type"] == "gemma3_text" else 2
        cfg.update(hidden_size=32, num_hidden_layers=layers, num_attention_heads=N, num_key_value_heads=K,
                   intermediate_size=64, max_position_embeddings=64)
        if "head_dim" in cfg:
            cfg["head_dim"] = 16
        if "max_window_layers" in cfg:
            cfg["max_window_layers"] = 1
        if cfg.get("sliding_window") is not None:
            cfg["sliding_window"] = 4
        if cfg.get("layer_types"):
            cfg["layer_types"] = cfg["layer_types"][:layers]
        if cfg.get("original_max_position_embeddings"):
            cfg["original_max_position_embeddings"] = 16
        scaling = cfg.get("rope_scaling")
        if scaling and "long_factor" in scaling:
            half = cfg.get("head_dim", 32 // N) // 2
            cfg["rope_scaling"] = {**scaling, "short_factor": scaling["short_factor"][:half],
                                   "long_factor": scaling["long_factor"][-half:]}
    cfg["vocab_size"] = 61
    for key, small in (("bos_token_id", 1), ("eos_token_id", 2), ("pad_token_id", 0)):
        if cfg.get(key) is not None:
            cfg[key] = [2, 3] if isinstance(cfg[key], list) else small
    cfg.setdefault("pad_token_id", 0)
    cfg.pop("torch_dtype", None)
    cfg["dtype"] = "float32"
    return cfg


@pytest.mark.parametrize("name", NAMES)
def test_shrunk_real_config_matches_transformers(name, tmp_path):
    cfg = shrink(raw(name))
    config = transformers.AutoConfig.for_model(**{k: v for k, v in cfg.items() if k != "auto_map"})
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf.eval().save_pretrained(tmp_path, safe_serialization=True)
    with open(tmp_path / "config.json", "w") as f:     # the shipped spelling, sizes shrunk
        json.dump(cfg, f)
    model = tqjax.load(str(tmp_path))
    tokens = np.random.default_rng(0).integers(4, 61, size=(2, 12))
    with torch.no_grad():
        ref = hf(torch.tensor(tokens)).logits.numpy()
    assert np.abs(np.asarray(tqjax.logits(model, tokens)) - ref).max() <= 1e-4
