"""Classifier reward models: one logit chosen by label, against transformers; roles checked."""

import numpy as np
import pytest
import torch

import tqjax
from tests import hf_models
from tests.models.test_parity import batch

LABELS3 = ["NEGATIVE", "NEUTRAL", "POSITIVE"]


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    return hf_models.save(hf_models.build_classifier("llama", LABELS3, seed=3), tmp_path_factory.mktemp("three"))


@pytest.mark.parametrize("name,labels,pick", [("gpt2", ["bad", "good"], "good"), ("qwen2", ["bad", "good"], 0),
                                              ("llama", LABELS3, "POSITIVE"), ("neox", LABELS3, 1)])
def test_label_logit_matches_transformers(name, labels, pick, tmp_path):
    hf = hf_models.build_classifier(name, labels, seed=2)
    model = tqjax.load(hf_models.save(hf, tmp_path), reward_label=pick)
    assert model.kind == "reward"
    tokens, lengths = batch(seed=2)
    with torch.no_grad():
        mask = torch.tensor((np.arange(tokens.shape[1])[None] < lengths[:, None]).astype(np.int64))
        ref = hf(torch.tensor(tokens), attention_mask=mask).logits.numpy()
    column = labels.index(pick) if isinstance(pick, str) else pick
    ours = np.asarray(tqjax.reward(model, tokens, lengths))
    assert np.abs(ours - ref[:, column]).max() <= 1e-4


def test_several_labels_need_a_label(three):
    with pytest.raises(ValueError, match=r"3 labels \(0='NEGATIVE', 1='NEUTRAL', 2='POSITIVE'\).*reward_label=.*--reward-label"):
        tqjax.load(three)


@pytest.mark.parametrize("bad", ["positive", 3])   # -1: refused at the door (tests/api/test_contract.py)
def test_unknown_label_lists_the_labels(three, bad):
    with pytest.raises(ValueError, match=r"is not a label.*0='NEGATIVE', 1='NEUTRAL', 2='POSITIVE'"):
        tqjax.load(three, reward_label=bad)


def test_label_for_a_causal_lm_is_an_error(tmp_path):
    path = hf_models.save(hf_models.build("llama"), tmp_path)
    with pytest.raises(ValueError, match="reward_label='POSITIVE' was given but the checkpoint is a causal language model"):
        tqjax.load(path, reward_label="POSITIVE")


def test_one_label_needs_no_label(tmp_path):
    path = hf_models.save(hf_models.build("llama", kind="reward"), tmp_path)
    assert tqjax.load(path).kind == "reward"
    assert tqjax.load(path, reward_label=0).kind == "reward"


def test_roles_are_checked(three, tmp_path):
    lm = tqjax.load(hf_models.save(hf_models.build("llama"), tmp_path))
    rm = tqjax.load(three, reward_label="POSITIVE")
    config = tqjax.DecodeConfig(method="tq", k=2, horizon=1, max_new_tokens=2)
    with pytest.raises(ValueError, match=r"TQParams.sft must be a kind='lm' model, got kind='reward'"):
        tqjax.decode(tqjax.TQParams(sft=rm, baseline=lm, reward=rm), [[3, 4, 5]], config)
    with pytest.raises(ValueError, match=r"TQParams.reward must be a kind='reward' model, got kind='lm'"):
        tqjax.decode(tqjax.TQParams(sft=lm, baseline=lm, reward=lm), [[3, 4, 5]], config)


def test_tq_decodes_through_a_label(three, tmp_path):
    """TQ* steered by the POSITIVE logit of a 3-label classifier; its reported reward is that logit."""
    sft = tqjax.load(hf_models.save(hf_models.build("llama", seed=0), tmp_path / "sft"))
    base = tqjax.load(hf_models.save(hf_models.build("llama", seed=1), tmp_path / "base"))
    rm = tqjax.load(three, reward_label="POSITIVE")
    config = tqjax.DecodeConfig(method="tq", k=3, horizon=2, max_new_tokens=3, alpha=5.0)
    out = tqjax.decode(tqjax.TQParams(sft=sft, baseline=base, reward=rm), [[3, 4, 5, 6]], config)
    ids = np.concatenate([[3, 4, 5, 6], np.asarray(out.tokens[0])])[None]
    np.testing.assert_allclose(out.rewards, np.asarray(tqjax.reward(rm, ids, np.array([ids.shape[1]]))), atol=1e-4)
