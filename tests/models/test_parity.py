"""tqjax models against PyTorch `transformers` on random tiny models of every architecture."""

import numpy as np
import pytest
import torch

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


@pytest.mark.parametrize("name", ["gpt2", "llama", "qwen2", "neox"])
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
