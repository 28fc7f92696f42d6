"""Hugging Face conventions against transformers itself: where a reward model reads its score,
every stop id of ``generation_config.json``, and both through `tqjax.decode`."""

from __future__ import annotations

import itertools
import json

import jax
import numpy as np
import pytest
import torch
import transformers

import tqjax
from tests import hf_models
from tests.api import hf_reference
from tests.decoding import decode_reference as ref
from tqjax.io.errors import CheckpointError

PAD = hf_models.PAD
PROMPTS = [[5, 17, 33, 8, 41], [23, 4, 9], [60, 11, 7, 7, 30, 12, 3]]

# Sequences per case; the reward model's pad_token_id for the case.
READ_CASES = {
    "ends-in-pad": (PAD, [[5, 9, 14, PAD], [7, PAD, PAD], [11, 3, 8, 20, PAD, PAD, PAD]]),
    "pad-inside": (PAD, [[5, PAD, 14, 9], [PAD, 7, 8], [PAD, PAD, 30]]),
    "all-pad": (PAD, [[PAD, PAD, PAD], [PAD]]),
    "pad-is-eos": (2, [[5, 9, 14, 2], [2, 7, 2], [2, 2, 2, 2]]),
    "pad-none": (None, [[5, 9, PAD], [PAD, PAD], [3, 4]]),
}


def hf_score(hf, seq) -> float:
    with torch.no_grad():
        return float(hf(torch.tensor([seq])).logits[0, 0])


@pytest.mark.parametrize("name", ["gpt2", "llama", "qwen2", "mistral", "neox"])
@pytest.mark.parametrize("case", list(READ_CASES))
def test_reward_reads_where_transformers_reads(name, case, tmp_path):
    pad, seqs = READ_CASES[case]
    hf = hf_models.build(name, kind="reward", seed=1)
    hf.config.pad_token_id = pad
    model = tqjax.load(hf_models.save(hf, tmp_path))
    assert model.config.pad_token_id == pad
    width = max(map(len, seqs)) + 2
    tokens = np.full((len(seqs), width), 13, np.int32)       # filler past each length: not pad
    for b, seq in enumerate(seqs):
        tokens[b, :len(seq)] = seq
    ours = np.asarray(tqjax.reward(model, tokens, np.array([len(s) for s in seqs])))
    expected = np.array([hf_score(hf, s) for s in seqs])
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    if case in ("ends-in-pad", "pad-is-eos"):
        # the case bites: reading the last token instead gives other numbers
        last = np.asarray(model.forward(tokens))[np.arange(len(seqs)), [len(s) - 1 for s in seqs]]
        assert np.abs(last - expected).max() > 1e-3


def test_protocol_outputs_read_like_transformers(tmp_path):
    """prefill, append, extend and forward_suffix of a reward model all read the pad rule."""
    hf = hf_models.build("llama", kind="reward", seed=2)
    model = tqjax.load(hf_models.save(hf, tmp_path))
    seq = [PAD, 7, PAD, 9, PAD, PAD, 12, PAD]
    prompt, rest = seq[:3], seq[3:]
    expected = [hf_score(hf, seq[:n]) for n in range(3, len(seq) + 1)]
    tokens_BT = jax.numpy.asarray([[4, 4] + prompt])     # left-padded by two slots
    start_B = jax.numpy.asarray([2])
    out, cache = model.prefill(tokens_BT, start_B, model.init_cache(1, 16))
    got = [float(out[0])]
    suffix = model.init_suffix(cache, len(rest))
    ext = []
    for tok in rest:
        o, suffix = model.extend(jax.numpy.asarray([tok]), cache, suffix)
        ext.append(float(o[0]))
    whole = np.asarray(model.forward_suffix(jax.numpy.asarray([rest]), cache))[0]
    for tok in rest:
        out, cache = model.append(jax.numpy.asarray([tok]), cache)
        got.append(float(out[0]))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(ext, expected[1:], atol=1e-4)
    np.testing.assert_allclose(whole, expected[1:], atol=1e-4)


# -- decoding through the engine --------------------------------------------------------------

def _models(tmp_path, eos, rm_pad, gen_eos=None):
    """HF SFT (seed 0), baseline (seed 1) and reward model (seed 2), saved and loaded by tqjax."""
    hfs = dict(sft=hf_models.build("llama", seed=0), baseline=hf_models.build("llama", seed=1),
               reward=hf_models.build("llama", kind="reward", seed=2))
    for m in hfs.values():
        m.config.eos_token_id = eos
        if m.can_generate():     # save_pretrained writes generation_config.json, which wins
            m.generation_config.eos_token_id = eos
    hfs["reward"].config.pad_token_id = rm_pad
    loaded = {}
    for role, m in hfs.items():
        path = hf_models.save(m, tmp_path / role)
        if gen_eos is not None and role != "reward":
            with open(f"{path}/generation_config.json", "w") as f:
                json.dump({"eos_token_id": gen_eos, "pad_token_id": PAD}, f)
        loaded[role] = tqjax.load(path)
    return hfs, tqjax.TQParams(**loaded)


def _ends_in(seqs, pad):
    return sum(s[-1] == pad for s in seqs)


# (eos, the reward model's pad id): pad == EOS, and a pad id the rollouts generate (46, 26 and
# 17 are what the seed-1 baseline repeats).
DECODE_CASES = {"pad-is-eos": (26, 26), "pad-generated": (17, 46)}


@pytest.mark.parametrize("case", list(DECODE_CASES))
@pytest.mark.parametrize("method", ["tq", "args"])
def test_decode_values_match_transformers(tmp_path, case, method):
    eos, pad = DECODE_CASES[case]
    hfs, params = _models(tmp_path, eos, pad)
    config = tqjax.DecodeConfig(method=method, k=4, horizon=3, max_new_tokens=5, diagnostics=True)
    out = tqjax.decode(params, PROMPTS, config)
    hf = hf_reference.HF(**hfs)
    for i, prompt in enumerate(PROMPTS):
        tokens, qs, r = hf_reference.tq(hf, prompt, config.k, 0 if method == "args" else config.horizon,
                                        config.alpha, config.max_new_tokens, {eos})
        assert out.tokens[i] == tokens, f"prompt {i}"
        np.testing.assert_allclose(out.diagnostics["q"][i], np.array(qs), atol=1e-4)
        np.testing.assert_allclose(out.rewards[i], r, atol=1e-4)
    # the rule was exercised: transformers read some of these sequences before their last token
    assert _ends_in(hf.scored, pad) > 0


def test_best_of_n_rewards_match_transformers(tmp_path):
    eos = pad = 26
    hfs, params = _models(tmp_path, eos, pad)
    config = tqjax.DecodeConfig(method="bon", n=4, temperature=0.7, max_new_tokens=6, seed=4)
    out = tqjax.decode(params, PROMPTS, config)
    fns = ref.Fns(params)
    samples = []
    for i, prompt in enumerate(PROMPTS):
        key = jax.random.fold_in(jax.random.key(config.seed), i)
        for j in range(config.n):
            sample = ref.plain(fns, prompt, config, jax.random.fold_in(key, j), {eos}, "sft")
            samples.append(sample["tokens"])
            np.testing.assert_allclose(out.diagnostics["sample_rewards"][i][j],
                                       hf_score(hfs["reward"], prompt + sample["tokens"]), atol=1e-4)
        kept = out.diagnostics["kept"][i]
        assert out.rewards[i] == out.diagnostics["sample_rewards"][i].max()
        np.testing.assert_allclose(out.rewards[i], hf_score(hfs["reward"], prompt + out.tokens[i]),
                                   atol=1e-4)
        assert out.tokens[i] == samples[-config.n + kept]
    assert _ends_in(samples, pad) > 0      # some samples end in EOS == pad


# -- every stop id -------------------------------------------------------------------------------

def _stop_ids(outputs):
    """Three ids that each end some output after its first token, when all three stop."""
    tokens = sorted({t for out in outputs for t in out})
    for ids in itertools.combinations(tokens, 3):
        ends = set()
        for out in outputs:
            hits = [p for p, t in enumerate(out) if t in ids]
            if hits and hits[0] >= 1:
                ends.add(out[hits[0]])
        if ends == set(ids):
            return list(ids)
    raise AssertionError(f"no stop set found in {outputs}")


def test_every_stop_id_ends_rows_and_rollouts(tmp_path):
    hf_sft = hf_models.build("llama", seed=0)
    hf = hf_reference.HF(hf_sft)
    prompts = PROMPTS + [[40, 2, 19, 50], [8], [33, 33, 21, 5, 6, 44]]
    free = [hf_reference.greedy(hf, p, 10, set()) for p in prompts]
    stop = _stop_ids(free)
    early = next(t for out in free for t in out[:1] if t not in stop)   # would end a row at once
    config_eos = [stop[0], stop[1], early]                              # config.json's list differs
    hfs, params = _models(tmp_path, config_eos, PAD, gen_eos=stop)
    assert params.sft.stop_token_ids == tuple(sorted(stop))
    assert params.sft.config != tqjax.load(tmp_path / "reward").config

    # plain greedy decoding equals transformers' generate() on the same folder
    out = tqjax.decode(params, prompts, tqjax.DecodeConfig(method="sft", max_new_tokens=10))
    generator = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "sft").eval()
    assert generator.generation_config.eos_token_id == stop
    ended = set()
    for i, prompt in enumerate(prompts):
        with torch.no_grad():
            ids = generator.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False,
                                     attention_mask=torch.ones(1, len(prompt), dtype=torch.long))
        assert out.tokens[i] == ids[0, len(prompt):].tolist(), f"prompt {i}"
        if out.tokens[i][-1] in stop:
            ended.add(out.tokens[i][-1])
    assert ended == set(stop)      # each id ended a row, and the stop token is kept

    # rollouts stop at each id too: TQ* (rollouts from π_sft, CD) against the reference
    config = tqjax.DecodeConfig(method="cd", k=4, horizon=4, max_new_tokens=3, diagnostics=True)
    out = tqjax.decode(params, prompts, config)
    hf = hf_reference.HF(**hfs)
    for i, prompt in enumerate(prompts):
        tokens, qs, _ = hf_reference.tq(hf, prompt, config.k, config.horizon, config.alpha,
                                        config.max_new_tokens, set(stop), rollout_role="sft")
        assert out.tokens[i] == tokens
        np.testing.assert_allclose(out.diagnostics["q"][i], np.array(qs), atol=1e-4)
    rollout_ends = {s[-1] for s in hf.scored if s[-1] in stop}
    assert len(rollout_ends) >= 2, rollout_ends


def test_extra_stop_ids_and_save_round_trip(tmp_path):
    hfs, params = _models(tmp_path, [26, 17], PAD, gen_eos=[26, 17, 50])
    sft = params.sft
    assert sft.stop_token_ids == (17, 26, 50)
    tqjax.save(sft, tmp_path / "saved")
    again = tqjax.load(tmp_path / "saved")
    assert again.stop_token_ids == (17, 26, 50) and again.config == sft.config
    free = tqjax.decode(params, PROMPTS, tqjax.DecodeConfig(method="sft", max_new_tokens=6))
    extra = free.tokens[0][1]
    out = tqjax.decode(params, PROMPTS, tqjax.DecodeConfig(method="sft", max_new_tokens=6,
                                                           stop_token_ids=(extra,)))
    assert len(free.tokens[0]) > 2 and out.tokens[0] == free.tokens[0][:2]


@pytest.mark.parametrize("value, error, message", [
    ((1.5,), TypeError, "stop_token_ids must be a tuple of non-negative int token ids"),
    (7, TypeError, "stop_token_ids must be a tuple"),
    ((-1,), ValueError, "non-negative"),      # a bad value, not a bad type (issue 24)
])
def test_bad_stop_token_ids(value, error, message):
    with pytest.raises(error, match=message):
        tqjax.DecodeConfig(stop_token_ids=value)


def test_stop_id_outside_vocabulary(tmp_path):
    _, params = _models(tmp_path, 2, PAD)
    with pytest.raises(ValueError, match=r"stop_token_ids \[61\] are outside the vocabulary"):
        tqjax.decode(params, PROMPTS, tqjax.DecodeConfig(method="sft", stop_token_ids=(61,)))


@pytest.mark.parametrize("gen, message", [
    ({"eos_token_id": "x"}, "eos_token_id must be an int, a list of ints or None"),
    ({"eos_token_id": [2, 99]}, r"eos_token_id \[99\] is outside the vocabulary"),
    ([1, 2], "not a JSON object"),
])
def test_bad_generation_config(tmp_path, gen, message):
    path = hf_models.save(hf_models.build("llama"), tmp_path)
    with open(f"{path}/generation_config.json", "w") as f:
        json.dump(gen, f)
    with pytest.raises(CheckpointError, match=message):
        tqjax.load(path)
