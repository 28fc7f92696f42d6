"""Continuous batching (``tqjax.decode(..., batch_size=B)``): every prompt's result equals decoding
it alone, for every method; no recompilation as prompts come and go; bad batch sizes are refused."""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest

from tqjax.api.decode import decode
from tqjax.decoding import DecodeConfig, continuous
from tqjax.decoding.memory import PlanError

# lengths 1 to 10 (the toy's context is 24 positions); with EOS = 4 many rows end early
TOY_PROMPTS = [[0, 1, 2], [3], [2, 2, 0, 1, 3, 0, 1, 1, 2, 0], [1, 1], [0, 3, 3, 2, 1], [2],
               [3, 0, 2, 2, 1, 0, 3], [1, 0, 0]]
METHODS = {
    "tq": DecodeConfig(method="tq", k=3, horizon=2, max_new_tokens=6),
    "tq-sampled-M2": DecodeConfig(method="tq", k=3, horizon=2, rollouts=2, select="sample",
                                  rollout_temperature=1.0, max_new_tokens=6, seed=9,
                                  diagnostics=True),
    "tq-indirect-chunked": DecodeConfig(method="tq", k=3, horizon=2, rollouts=2,
                                        transfer="indirect", candidate_chunk=2, max_new_tokens=6),
    "cd": DecodeConfig(method="cd", k=3, horizon=2, max_new_tokens=6),
    "args": DecodeConfig(method="args", k=3, horizon=0, max_new_tokens=6),
    "bon": DecodeConfig(method="bon", n=3, temperature=1.0, max_new_tokens=6, seed=4),
    "sft": DecodeConfig(method="sft", max_new_tokens=6),
}


def assert_as_alone(params, prompts, config, out, atol=1e-5):
    """``out`` (one continuous decode of ``prompts``) equals each prompt decoded alone: the same
    tokens, choices and counts, the same numbers up to float rounding (a transformer's prompt
    bucket differs between the two, so its sums run over differently padded rows)."""
    for i, prompt in enumerate(prompts):
        alone = decode(params, [prompt], config, indices=[i])
        assert out.tokens[i] == alone.tokens[0], f"prompt {i}"
        for name in ("logp_sft", "kl", "log_ratio") + (("rewards",) if alone.rewards is not None else ()):
            np.testing.assert_allclose(getattr(out, name)[i], getattr(alone, name)[0], atol=atol,
                                       rtol=1e-5, err_msg=f"{name} of prompt {i}")
        for name in ("nonfinite", "fallbacks", "kept"):
            if name in alone.diagnostics:
                assert out.diagnostics[name][i] == alone.diagnostics[name][0], f"{name} of prompt {i}"
        if "sample_rewards" in alone.diagnostics:
            np.testing.assert_allclose(out.diagnostics["sample_rewards"][i],
                                       alone.diagnostics["sample_rewards"][0], rtol=1e-6, atol=atol)
        if "rank" in alone.diagnostics:
            np.testing.assert_array_equal(out.diagnostics["rank"][i], alone.diagnostics["rank"][0])
            np.testing.assert_allclose(out.diagnostics["q"][i], alone.diagnostics["q"][0], rtol=1e-5,
                                       atol=atol)


@pytest.mark.parametrize("method", list(METHODS))
def test_continuous_equals_each_prompt_alone(toys, method):
    params, rbl = toys
    if method == "tq-indirect-chunked":
        params = params.__class__(params.sft, params.baseline, params.reward, rbl)
    config = METHODS[method]
    stats = continuous.Stats()
    out = decode(params, TOY_PROMPTS, config, batch_size=3, stats=stats)
    lengths = [len(t) for t in out.tokens]
    assert min(lengths) < config.max_new_tokens <= max(lengths)     # early EOS and full rows
    assert stats.inserts > 2 and stats.inserted == len(TOY_PROMPTS) * (config.n if method == "bon" else 1)
    assert stats.live_row_steps <= stats.row_steps
    assert_as_alone(params, TOY_PROMPTS, config, out)


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
@pytest.mark.parametrize("method", ["tq-sampled-M2", "sft"])
def test_transformer_continuous_equals_alone(tiny, method):
    _, params, _ = tiny
    prompts = [[5, 17, 33, 8, 41, 12, 9], [23, 4], [60, 1, 7, 7, 30], [3] * 11, [9, 9]]
    config = METHODS[method]
    out = decode(params, prompts, config, batch_size=2, chunk=3)
    if method == "sft":         # the fixture's EOS is one greedy SFT emits early
        assert len({len(t) for t in out.tokens}) > 1
    assert_as_alone(params, prompts, config, out, atol=1e-4)


def test_batch_size_larger_than_the_prompts_and_the_planner_pick(toys):
    params, _ = toys
    config = METHODS["tq"]
    want = decode(params, TOY_PROMPTS[:3], config)
    for batch_size in (1, 16, 0):
        out = decode(params, TOY_PROMPTS[:3], config, batch_size=batch_size)
        assert out.tokens == want.tokens, batch_size


def test_no_recompilation_as_prompts_come_and_go(toys, monkeypatch):
    params, _ = toys
    chunk = jax.jit(chex.assert_max_traces(continuous._run_chunk, n=1),
                    static_argnames=("plan", "chunk", "mesh"), donate_argnames=("state",))
    # one insert program per rows-put-in bucket: 1, 2 and 4 for 4 rows in flight
    put = jax.jit(chex.assert_max_traces(continuous._insert, n=3),
                  static_argnames=("plan", "mesh"), donate_argnames=("state", "keys_B"))
    monkeypatch.setattr(continuous, "run_chunk", chunk)
    monkeypatch.setattr(continuous, "insert", put)
    config = METHODS["tq-sampled-M2"]
    for prompts in (TOY_PROMPTS, TOY_PROMPTS[::-1], TOY_PROMPTS[2:] * 2):    # same prompt bucket
        decode(params, prompts, config, batch_size=4)
    decode(params, TOY_PROMPTS, config.replace(alpha=0.3, seed=1), batch_size=4)


@pytest.mark.parametrize("batch_size, error, match", [
    (-1, ValueError, "batch_size must be >= 0"),
    (2.5, TypeError, "batch_size must be an int, got float"),
    (True, TypeError, "batch_size must be an int, got bool"),
    ("4", TypeError, "batch_size must be an int, got str"),
])
def test_bad_batch_size(toys, batch_size, error, match):
    params, _ = toys
    with pytest.raises(error, match=match):
        decode(params, TOY_PROMPTS, METHODS["sft"], batch_size=batch_size)


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
def test_batch_size_beyond_the_memory_planner(tiny, monkeypatch):
    _, params, _ = tiny
    # on a 16 KiB device: one device, so the compiled programs' size decides
    monkeypatch.setattr("tqjax.decoding.memory.device_memory", lambda: 1 << 14)
    with pytest.raises(PlanError, match=r"batch_size=2 does not fit this device: the compiled "
                                        r"programs need [0-9.]+ [KM]iB per device, the device has 16\.00 KiB"):
        decode(params, [[1, 2], [3]], METHODS["tq"].replace(max_new_tokens=4), batch_size=2)
    # batch_size=0: the planner picks (here nothing fits)
    with pytest.raises(PlanError, match="not even batch_size=1 fits"):
        decode(params, [[1, 2]], METHODS["tq"].replace(max_new_tokens=4), batch_size=0)


def test_bad_chunk(toys):
    params, _ = toys
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        decode(params, TOY_PROMPTS, METHODS["sft"], batch_size=2, chunk=0)


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
def test_continuous_on_a_mesh_with_candidate_chunks_equals_one_device(tiny):
    import tqjax

    _, params, _ = tiny
    prompts = [[5, 17, 33, 8, 41, 12, 9], [23, 4], [60, 1, 7, 7, 30], [3] * 11, [9, 9]]
    config = METHODS["tq-sampled-M2"].replace(candidate_chunk=2, diagnostics=False)
    mesh = tqjax.make_mesh(model=2)          # (data 4, model 2)
    stats = continuous.Stats()
    out = decode(params, prompts, config, batch_size=3, mesh=mesh, stats=stats)
    assert stats.row_steps % 4 == 0          # 3 rows in flight, rounded up to the data axis: 4
    assert_as_alone(params, prompts, config, out, atol=1e-4)
