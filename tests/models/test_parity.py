"""tqjax models against PyTorch `transformers` on random tiny models of every architecture."""

import numpy as np
import pytest
import jax.numpy as jnp
import torch
import transformers

import tqjax
from tests import hf_models

ARCHS = sorted(hf_models.CONFIGS)


def batch(seed=0, B=3, T=12):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(3, hf_models.VOCAB, size=(B, T))
    lengths = np.array([T, T - 5, 4][:B])
    for b, n in enumerate(lengths):
        tokens[b, n:] = hf_models.PAD
    return tokens, lengths


@pytest.mark.parametrize("name", ARCHS)
def test_logits_match_transformers(name, tmp_path):
    hf = hf_models.build(name)
    model = tqjax.load(hf_models.save(hf, tmp_path))
    tokens, lengths = batch()
    mask = (np.arange(tokens.shape[1])[None] < lengths[:, None])
    with torch.no_grad():
        ref = hf(torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64))).logits.numpy()
    ours = np.asarray(tqjax.logits(model, tokens))
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    assert np.abs(ours - ref)[mask].max() <= 1e-4


@pytest.mark.parametrize("name", ["gpt2", "llama", "qwen2", "neox", "mistral-window", "qwen3", "gemma", "gemma2", "gemma3", "phi3"])
def test_reward_matches_transformers(name, tmp_path):
    hf = hf_models.build(name, kind="reward", seed=1)
    model = tqjax.load(hf_models.save(hf, tmp_path))
    assert model.kind == "reward"
    tokens, lengths = batch(seed=1)
    with torch.no_grad():
        mask = torch.tensor((np.arange(tokens.shape[1])[None] < lengths[:, None]).astype(np.int64))
        ref = hf(torch.tensor(tokens), attention_mask=mask).logits[:, 0].numpy()
    ours = np.asarray(tqjax.reward(model, tokens, lengths))
    assert np.abs(ours - ref).max() <= 1e-4


def test_bfloat16_tolerance(tmp_path):
    """bf16 weights: max |Δ logits| vs float32 PyTorch measured 0.007-0.010 on logits of scale ~1 (README)."""
    hf = hf_models.build("llama")
    model = tqjax.load(hf_models.save(hf, tmp_path), dtype="bfloat16")
    assert model.dtype == np.dtype("bfloat16")
    tokens, _ = batch(B=2, T=12)
    tokens[:] = np.maximum(tokens, 3)
    with torch.no_grad():
        ref = hf(torch.tensor(tokens)).logits.numpy()
    ours = np.asarray(tqjax.logits(model, tokens))
    assert ours.dtype == np.float32
    err = np.abs(ours - ref).max()
    assert 0 < err <= 0.05


@pytest.mark.parametrize("name", ["phi3", "gemma3"])
def test_cached_decoding_past_the_window_and_longrope_context_matches_transformers(name, tmp_path):
    """Token by token with transformers' own cache, across the sliding window and, for Phi-3,
    past ``original_max_position_embeddings`` (8 here), where longrope switches to the long
    factors for each new token: tqjax's prefill + append give transformers' logits."""
    config = hf_models.CONFIGS[name]()
    if name == "phi3":
        config.original_max_position_embeddings = config.rope_parameters["original_max_position_embeddings"] = 8
    torch.manual_seed(2)
    hf = transformers.AutoModelForCausalLM.from_config(config).eval()
    model = tqjax.load(hf_models.save(hf, tmp_path))
    tokens = np.random.default_rng(2).integers(3, hf_models.VOCAB, size=(2, 14))
    with torch.no_grad():
        out = hf(torch.tensor(tokens[:, :6]), use_cache=True)
        ref, past = [out.logits[:, -1].numpy()], out.past_key_values
        for t in range(6, 14):
            out = hf(torch.tensor(tokens[:, t:t + 1]), past_key_values=past, use_cache=True)
            ref.append(out.logits[:, -1].numpy())
            past = out.past_key_values
    logits, cache = model.prefill(jnp.asarray(tokens[:, :6]), jnp.zeros(2, jnp.int32), model.init_cache(2, 16))
    ours = [np.asarray(logits)]
    for t in range(6, 14):
        logits, cache = model.append(jnp.asarray(tokens[:, t]), cache)
        ours.append(np.asarray(logits))
    assert np.abs(np.stack(ours) - np.stack(ref)).max() <= 1e-4
