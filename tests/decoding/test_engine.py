"""Engine properties: special cases, determinism, batch independence, no recompiles, bucketing,
non-finite rewards, and a shared (not copied) prefix cache."""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tqjax
from tqjax.api.decode import TQParams, decode, prepare
from tqjax.decoding import DecodeConfig, DecodePlan, Knobs, engine, tq
from tqjax.models import ModelConfig, init_model, toy

TOY_PROMPTS = [[0, 1, 2], [3], [2, 2, 0, 1, 3, 0]]
SAMPLED = DecodeConfig(method="tq", k=3, horizon=2, rollouts=2, select="sample", max_new_tokens=6,
                       seed=9)


# k=1 is a program of its own; one architecture is enough for it
@pytest.mark.parametrize("changes, tiny", [(dict(k=1), "llama"), (dict(alpha=0.0), "llama"),
                                           (dict(alpha=0.0), "gpt2")],
                         indirect=["tiny"], ids=["k=1-llama", "alpha=0-llama", "alpha=0-gpt2"])
def test_k1_and_alpha0_are_greedy_sft(tiny, prompts, changes):
    _, params, _ = tiny
    sft = decode(params, prompts, DecodeConfig(method="sft", max_new_tokens=5))
    out = decode(params, prompts, DecodeConfig(method="tq", k=3, horizon=3, rollouts=2,
                                               max_new_tokens=5, seed=3).replace(**changes))
    assert out.tokens == sft.tokens
    np.testing.assert_allclose(out.logp_sft, sft.logp_sft, atol=1e-5)
    if changes.get("alpha") == 0.0:   # π_alg = π_sft over the candidates
        np.testing.assert_allclose(out.kl, 0.0, atol=1e-6)


def test_tq_moves_off_sft_and_reports_its_tokens_sft_logprob(tiny, prompts):
    """TQ* leaves greedy SFT; ``logp_sft`` is the SFT model's log-prob of the tokens TQ* chose
    (recomputed here by one full forward), and a row whose tokens differ has KL > 0 (equal
    distributions at every step would give greedy SFT's tokens)."""
    _, params, _ = tiny
    sft = decode(params, prompts, DecodeConfig(method="sft", max_new_tokens=5))
    out = decode(params, prompts, DecodeConfig(method="tq", k=3, horizon=3, rollouts=2,
                                               max_new_tokens=5, seed=3))
    assert out.tokens != sft.tokens
    for i, (prompt, response) in enumerate(zip(prompts, out.tokens)):
        logp_TV = jax.nn.log_softmax(tqjax.logits(params.sft, [prompt + response])[0], axis=-1)
        picked = [float(logp_TV[len(prompt) - 1 + t, tok]) for t, tok in enumerate(response)]
        np.testing.assert_allclose(out.logp_sft[i], sum(picked), rtol=1e-4, atol=1e-4)
        if response != sft.tokens[i]:
            assert out.kl[i] > 0
    assert np.all(out.kl >= 0)


def test_same_seed_same_output_and_seed_matters(toys):
    params, _ = toys
    a = decode(params, TOY_PROMPTS * 3, SAMPLED)
    b = decode(params, TOY_PROMPTS * 3, SAMPLED)
    c = decode(params, TOY_PROMPTS * 3, SAMPLED.replace(seed=10))
    assert a.tokens == b.tokens
    np.testing.assert_array_equal(a.rewards, b.rewards)
    assert a.tokens != c.tokens


def test_prompt_output_independent_of_batch(toys):
    params, _ = toys
    batch = [[4, 4], [0, 1, 2], [1, 1, 1, 1, 1, 1, 1, 1, 1, 3], [3], [2]]
    full = decode(params, batch, SAMPLED)
    for i in (1, 3):
        alone = decode(params, [batch[i]], SAMPLED, indices=[i])
        assert alone.tokens[0] == full.tokens[i]
        np.testing.assert_allclose(alone.rewards[0], full.rewards[i], rtol=1e-6)
        np.testing.assert_allclose(alone.kl[0], full.kl[i], rtol=1e-5)
    # a different neighbour, batch size and padding: prompt 1 still decodes the same
    other = decode(params, [batch[1], [2] * 13],
                   SAMPLED, indices=[1, 7])
    assert other.tokens[0] == full.tokens[1]


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)   # the toy covers the engine's keys
def test_transformer_padding_and_batch_independence(tiny, prompts):
    _, params, _ = tiny
    config = DecodeConfig(method="tq", k=3, horizon=3, rollouts=2, max_new_tokens=5, seed=3)
    full = decode(params, prompts, config)
    alone = decode(params, [prompts[1]], config, indices=[1])
    assert alone.tokens[0] == full.tokens[1]
    np.testing.assert_allclose(alone.rewards[0], full.rewards[1], atol=1e-4)


def test_sweeps_and_bucketed_shapes_do_not_retrace(toys, monkeypatch):
    params, _ = toys
    counted = jax.jit(chex.assert_max_traces(engine._decode_arrays, n=1),
                      static_argnames=("plan",))
    monkeypatch.setattr(engine, "decode_arrays", counted)
    base = SAMPLED.replace(transfer="indirect", rollout_temperature=1.0)
    for config, prompts in [
        (base, TOY_PROMPTS),
        (base.replace(alpha=0.25), TOY_PROMPTS),
        (base.replace(beta=3.0), TOY_PROMPTS),
        (base.replace(rollout_temperature=0.6), TOY_PROMPTS),
        (base.replace(seed=123), TOY_PROMPTS),
        (base, [[1, 2, 3, 4, 0, 1, 2], [2], [0, 0]]),       # same buckets: batch 4, length 8
        (base, [[1], [2], [3], [4]]),
    ]:
        decode(params, prompts, config)
    sampled = DecodeConfig(method="sft", temperature=0.7, top_p=0.9, top_k=3, max_new_tokens=4)
    chex.clear_trace_counter()
    for t, p in [(0.7, 0.9), (1.3, 0.5), (0.2, 0.99)]:
        decode(params, TOY_PROMPTS, sampled.replace(temperature=t, top_p=p))


def test_bucketing():
    params = TQParams(toy.random_toy(jax.random.key(0)), reward=None)
    arrays, _ = prepare(params, [[1, 2, 3], [1]], DecodeConfig(method="sft", max_new_tokens=2))
    assert arrays["tokens_BT"].shape == (2, 8)
    np.testing.assert_array_equal(arrays["start_B"], [5, 7])
    arrays, _ = prepare(params, [[1] * 9] * 3, DecodeConfig(method="sft", max_new_tokens=2))
    assert arrays["tokens_BT"].shape == (4, 16)
    np.testing.assert_array_equal(arrays["live_B"], [True, True, True, False])
    # the bucket never pushes a prompt that fits past the context (24 positions for this toy)
    arrays, _ = prepare(params, [[1] * 17], DecodeConfig(method="sft", max_new_tokens=4))
    assert arrays["tokens_BT"].shape == (1, 20)


def test_nonfinite_rewards_are_counted_and_fall_back(toys):
    params, _ = toys
    table = np.asarray(params.reward.table).copy()
    table[6, ::2] = np.nan            # step 1: some rollouts end in a NaN state (position 6)
    table[5, :] = np.inf              # step 0: every rollout ends at position 5 and scores inf
    sft = dataclasses.replace(params.sft, eos_token_id=None)
    bad = TQParams(sft, params.baseline, toy.ToyModel(jnp.asarray(table), kind="reward"))
    config = DecodeConfig(method="tq", k=3, horizon=1, max_new_tokens=4, ignore_eos=True,
                          diagnostics=True)
    out = decode(bad, [[0, 1, 2, 3]], config)
    d = out.diagnostics
    # step 0 ends rollouts at position 5 (prompt 0..3, z at 4, τ at 5): all inf, fallback
    assert d["fallbacks"][0] >= 1 and d["rank"][0][0] == -1
    sft_argmax = int(np.argmax(params.sft.next_logits([0, 1, 2, 3])))
    assert out.tokens[0][0] == sft_argmax
    assert d["nonfinite"][0] > 3 and d["fallbacks"][0] < 4   # step 1 has finite candidates too
    assert np.all(np.isfinite(out.kl)) and np.all(np.isfinite(out.logp_sft))
    from tests.decoding import decode_reference as ref
    expected, stats = ref.decode(bad, [[0, 1, 2, 3]], config)
    assert out.tokens[0] == expected[0]["tokens"]
    assert d["fallbacks"][0] == stats["fallbacks"] and d["nonfinite"][0] == stats["nonfinite"]


def test_bon_skips_nonfinite_samples(toys):
    params, _ = toys
    table = np.asarray(params.reward.table).copy()
    table[:, ::3] = np.nan
    bad = TQParams(params.sft, params.baseline, toy.ToyModel(jnp.asarray(table), kind="reward"))
    out = decode(bad, TOY_PROMPTS, DecodeConfig(method="bon", n=4, temperature=1.0,
                                                max_new_tokens=4))
    rewards = out.diagnostics["sample_rewards"]
    for i in range(len(TOY_PROMPTS)):
        finite = rewards[i][np.isfinite(rewards[i])]
        if finite.size:
            assert out.rewards[i] == finite.max()
    assert out.diagnostics["nonfinite"].sum() == np.sum(~np.isfinite(rewards))


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
def test_plain_decodes_read_the_reward_of_the_whole_response_after_the_loop(tiny, prompts):
    """A plain decode of one batch reads r once after the loop (`loop.read_responses`): each
    reported reward is r's score of prompt + response as transformers reads it, for rows that
    stop early, rows of every prompt length, and best-of-N's kept samples; with the EOS as the
    reward model's pad id, a row that ends in it is read at the token before, as transformers
    reads it; continuous batching (r appended to at every step) gives the same numbers."""
    _, params, _ = tiny
    (eos,) = params.sft.config.eos_token_id       # the fixture's one EOS id
    padded_rm = params.reward.replace(config=params.reward.config.replace(pad_token_id=eos))
    greedy = DecodeConfig(method="sft", max_new_tokens=6)
    for rm, config in ((params.reward, greedy), (padded_rm, greedy),
                       (params.reward, DecodeConfig(method="bon", n=3, temperature=1.0, max_new_tokens=6, seed=3))):
        params = TQParams(sft=params.sft, reward=rm)
        out = decode(params, prompts, config)
        if config.method == "sft":      # the fixture's EOS ends some greedy rows early
            assert len({len(t) for t in out.tokens}) > 1
            assert any(t[-1] == eos for t in out.tokens)
        for i, (prompt, response) in enumerate(zip(prompts, out.tokens)):
            ids = np.asarray([prompt + response], np.int32)
            want = float(tqjax.reward(rm, ids, np.asarray([ids.shape[1]]))[0])
            np.testing.assert_allclose(out.rewards[i], want, atol=1e-5, err_msg=f"{config.method} {i}")
            if rm is padded_rm and response[-1] == eos:       # transformers: the last non-pad token
                before = float(tqjax.reward(rm, ids[:, :-1], np.asarray([ids.shape[1] - 1]))[0])
                np.testing.assert_allclose(out.rewards[i], before, atol=1e-5)
        if config.method == "bon":
            np.testing.assert_allclose(out.rewards, out.diagnostics["sample_rewards"].max(axis=1), atol=0)
        continuous = decode(params, prompts, config, batch_size=2)
        assert continuous.tokens == out.tokens
        np.testing.assert_allclose(continuous.rewards, out.rewards, atol=1e-5)


def _rollout_temp_bytes(params, k, B, S, horizon=4):
    """Temporary memory of one step's rollouts (`tq.candidate_values`), the caches as inputs."""
    config = DecodeConfig(method="tq", k=k, horizon=horizon, max_new_tokens=4)
    models = dict(sft=params.sft, baseline=params.baseline, reward=params.reward)
    caches = {}
    for role, model in models.items():
        cache = model.init_cache(B, S)
        caches[role] = cache.replace(length=jnp.asarray(S - 1, jnp.int32))
    V = params.sft.vocab_size
    logp = dict(sft=jnp.zeros((B, V)), baseline=jnp.zeros((B, V)))
    cand_BC = jnp.zeros((B, k), jnp.int32)
    keys_B = jax.random.split(jax.random.key(0), B)

    def values(models, caches, logp, cand_BC, keys_B, knobs):
        return tq.candidate_values(models, caches, logp, cand_BC, keys_B, knobs, plan)

    plan = DecodePlan.build(config, models, stop_ids=(2,))
    lowered = jax.jit(values).lower(models, caches, logp, cand_BC, keys_B, Knobs.from_config(config))
    return lowered.compile().memory_analysis().temp_size_in_bytes


def test_rollouts_share_the_prefix_cache():
    """The rollouts' memory grows with k by their suffixes and scores, never by k copies of the
    prefix cache (which would cost (k_large - k_small) x the prefix bytes of every model)."""
    cfg = ModelConfig.tiny(arch="llama", max_positions=1024)
    ks = jax.random.split(jax.random.key(0), 3)
    params = TQParams(init_model(cfg, ks[0]), init_model(cfg, ks[1]),
                      init_model(cfg.replace(kind="reward"), ks[2]))
    B, S = 2, 1024
    prefix_bytes = 3 * cfg.n_layers * 2 * B * cfg.n_kv_heads * S * cfg.head_dim * 4  # 3 models
    small, large = _rollout_temp_bytes(params, 2, B, S), _rollout_temp_bytes(params, 8, B, S)
    assert large > small                               # the measure does see the rollouts
    assert large - small < 0.25 * (8 - 2) * prefix_bytes, (small, large, prefix_bytes)


class LetterTokenizer:
    """A character-level tokenizer over the toy's five tokens: 'abcd' and EOS '.'."""

    letters = "abcd."

    def encode(self, text):
        return [self.letters.index(ch) for ch in text]

    def decode(self, ids, skip_special_tokens=False):
        return "".join(self.letters[i] for i in ids if not (skip_special_tokens and i == 4))


def test_string_prompts_use_the_sft_tokenizer(toys):
    params, _ = toys
    named = TQParams(dataclasses.replace(params.sft, tokenizer=LetterTokenizer()),
                     params.baseline, params.reward)
    config = DecodeConfig(method="sft", max_new_tokens=6)
    by_text = decode(named, ["abc", "d"], config)
    by_ids = decode(params, [[0, 1, 2], [3]], config)
    assert by_text.tokens == by_ids.tokens
    assert by_text.texts == [LetterTokenizer().decode(t, skip_special_tokens=True)
                             for t in by_ids.tokens]
    assert by_ids.texts is None
