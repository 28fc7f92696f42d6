"""Every bad input fails before any compute, with a clear error (type and message)."""

from __future__ import annotations

import dataclasses
import math

import jax
import pytest

from tqjax.api.decode import TQParams, decode
from tqjax.decoding import DecodeConfig
from tqjax.models import toy


@pytest.mark.parametrize("fields, error, match", [
    (dict(k=0), ValueError, "k must be >= 1"),
    (dict(k=2.5), TypeError, "k must be an int"),
    (dict(alpha=math.nan), ValueError, "alpha must be finite"),
    (dict(alpha=math.inf), ValueError, "alpha must be finite"),
    (dict(beta=math.inf), ValueError, "beta must be finite"),
    (dict(beta=0.0), ValueError, "beta must be > 0"),
    (dict(horizon=-1), ValueError, "horizon must be >= 0"),
    (dict(rollouts=0), ValueError, "rollouts must be >= 1"),
    (dict(max_new_tokens=0), ValueError, "max_new_tokens must be >= 1"),
    (dict(temperature=-0.1), ValueError, "temperature must be >= 0"),
    (dict(rollout_temperature=-1.0), ValueError, "rollout_temperature must be >= 0"),
    (dict(top_p=0.0), ValueError, "top_p must be > 0"),
    (dict(top_p=1.5), ValueError, r"top_p must be in \(0, 1\]"),
    (dict(method="beam"), ValueError, "unknown method 'beam'"),
    (dict(transfer="sideways"), ValueError, "unknown transfer"),
    (dict(weights="raw"), ValueError, "unknown weights"),
    (dict(proposal="dpo"), ValueError, "unknown proposal"),
    (dict(select="top"), ValueError, "unknown select"),
    (dict(method="cd", transfer="indirect"), ValueError, "transfer='indirect' needs method='tq'"),
    (dict(ignore_eos=1), TypeError, "ignore_eos must be a bool"),
])
def test_bad_config(fields, error, match):
    with pytest.raises(error, match=match):
        DecodeConfig(**fields)


@pytest.fixture(scope="module")
def params():
    ks = jax.random.split(jax.random.key(0), 3)
    return TQParams(toy.random_toy(ks[0], eos_token_id=4), toy.random_toy(ks[1]),
                    toy.random_toy(ks[2], kind="reward"))


TQ = DecodeConfig(k=3, horizon=2, max_new_tokens=4)


@pytest.mark.parametrize("prompts, error, match", [
    ([], ValueError, "prompts is empty"),
    ("hello", TypeError, "prompts must be a list"),
    ([[]], ValueError, "prompt 0 is empty"),
    ([[1, 2], [0, 5]], ValueError, r"prompt 1 has token ids outside the vocabulary \[0, 5\): \[5\]"),
    ([[-1]], ValueError, "outside the vocabulary"),
    ([[1.5, 2.0]], TypeError, "prompt 0 must hold integer token ids"),
    ([[[1, 2]]], ValueError, "must be a 1-D sequence"),
    (["hi"], ValueError, "prompt 0 is a string but the SFT model has no tokenizer"),
    ([[1] * 19], ValueError, r"prompt \(19 tokens\) \+ max_new_tokens \(4\) \+ horizon \(2\) = 25 "
                             r"exceeds the sft model's context of 24 positions"),
])
def test_bad_prompts(params, prompts, error, match):
    with pytest.raises(error, match=match):
        decode(params, prompts, TQ)


def test_bad_models(params):
    with pytest.raises(ValueError, match=r"k=6 is larger than the vocabulary \(5\)"):
        decode(params, [[1]], TQ.replace(k=6))
    with pytest.raises(TypeError, match="params must be a tqjax.TQParams"):
        decode((params.sft, params.baseline), [[1]], TQ)
    with pytest.raises(TypeError, match="config must be a tqjax.DecodeConfig"):
        decode(params, [[1]], dict(method="tq"))
    with pytest.raises(ValueError, match=r"method='tq' \(proposal='sft'\) needs a baseline model"):
        decode(TQParams(params.sft, None, params.reward), [[1]], TQ)
    with pytest.raises(ValueError, match="method='args' .* needs a reward model"):
        decode(TQParams(params.sft, params.baseline), [[1]], TQ.replace(method="args"))
    with pytest.raises(ValueError, match="needs a baseline model"):
        decode(TQParams(params.sft, None, params.reward), [[1]],
               TQ.replace(method="cd", proposal="baseline"))
    with pytest.raises(ValueError, match="TQParams.reward must be a kind='reward' model"):
        decode(TQParams(params.sft, params.baseline, params.sft), [[1]], TQ)
    with pytest.raises(ValueError, match="TQParams.baseline_reward must be a kind='reward'"):
        decode(TQParams(params.sft, params.baseline, params.reward, params.sft), [[1]],
               TQ.replace(transfer="indirect"))
    wide = toy.random_toy(jax.random.key(3), vocab=7)
    with pytest.raises(ValueError, match=r"vocabularies differ \(sft=5, baseline=7, reward=5\)"):
        decode(TQParams(params.sft, wide, params.reward), [[1]], TQ)
    short = dataclasses.replace(params.reward, table=params.reward.table[:6])
    with pytest.raises(ValueError, match="exceeds the reward model's context of 6"):
        decode(TQParams(params.sft, params.baseline, short), [[1]], TQ)


def test_indirect_needs_a_baseline(params):
    with pytest.raises(ValueError, match="transfer='indirect' needs a baseline model"):
        decode(TQParams(params.sft, None, params.reward), [[1]],
               DecodeConfig(method="tq", transfer="indirect", k=2).replace(proposal="sft"))
