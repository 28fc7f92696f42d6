"""`tqjax.api.sizing`: on one device, a continuous decode is sized by XLA's memory analysis of the
programs it will run, and those compiled programs are the ones the decode then runs."""

from __future__ import annotations

import jax
import pytest

import tqjax
from tests.compile_events import compile_events
from tqjax.api import sizing
from tqjax.decoding.memory import PlanError
from tqjax.models import ModelConfig, init_model

CONFIG = tqjax.DecodeConfig(k=3, horizon=2, max_new_tokens=4)
PROMPTS = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [3]]
T = 8           # the prompts' bucket


@pytest.fixture(scope="module")
def decoder():
    lm = init_model(ModelConfig.tiny("llama"), jax.random.key(0))
    rm = init_model(ModelConfig.tiny("llama", kind="reward"), jax.random.key(1))
    return tqjax.Decoder(tqjax.TQParams(lm, lm, rm), CONFIG)


@pytest.fixture
def compiles():
    """XLA compilations from here on (a list that grows), all in memory: a persistent cache
    (``TQJAX_TEST_CACHE=1``) would answer a cold run too."""
    persistent = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        with compile_events("backend_compile") as seen:
            yield seen
    finally:
        jax.config.update("jax_enable_compilation_cache", persistent)


def test_the_sized_programs_are_the_ones_the_decode_runs(decoder, compiles, monkeypatch):
    """A decode after `compiled_bytes` compiles two programs fewer (the chunk and the insert it
    sized) than the same decode from cold, and gives the same tokens."""
    monkeypatch.setattr(sizing, "planned_batch_size", lambda d, batch_size, t, p, chunk: batch_size)
    jax.clear_caches()
    cold = decoder.run(PROMPTS, 2)
    n_cold = len(compiles)
    jax.clear_caches()
    sizing.compiled_bytes(decoder, 2, T)
    before = len(compiles)
    warm = decoder.run(PROMPTS, 2)
    assert len(compiles) - before <= n_cold - 2, (n_cold, len(compiles) - before)
    assert warm.tokens == cold.tokens


def test_compiled_size_grows_with_the_rows(decoder):
    params = sum(x.nbytes for x in jax.tree.leaves(decoder.params))
    two, four = sizing.compiled_bytes(decoder, 2, T), sizing.compiled_bytes(decoder, 4, T)
    assert params < two < four


def test_the_compiled_size_decides_on_one_device(decoder, monkeypatch):
    need = sizing.compiled_bytes(decoder, 2, T)
    monkeypatch.setattr("tqjax.decoding.memory.device_memory", lambda: need)
    assert sizing.planned_batch_size(decoder, 2, PROMPTS, T) == 2
    monkeypatch.setattr("tqjax.decoding.memory.device_memory", lambda: need - 1)
    with pytest.raises(PlanError, match=r"batch_size=2 does not fit this device: the compiled "
                                        r"programs need .* per device"):
        sizing.planned_batch_size(decoder, 2, PROMPTS, T)


def test_batch_size_0_steps_down_to_what_the_compiled_programs_fit(decoder, monkeypatch):
    """With room for the compiled programs of 2 rows but not of 4, the planner's pick is at
    most what fits, whatever the estimate said."""
    two, four = sizing.compiled_bytes(decoder, 2, T), sizing.compiled_bytes(decoder, 4, T)
    budget = (two + four) // 2
    monkeypatch.setattr("tqjax.decoding.memory.device_memory", lambda: budget)
    picked = sizing.planned_batch_size(decoder, 0, PROMPTS, T)
    assert 1 <= picked < 4 and sizing.compiled_bytes(decoder, picked, T) <= budget
