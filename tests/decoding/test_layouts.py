"""`DecodeConfig.layers`: the decoding loops run a transformer's layers scanned or unrolled, as
asked, and both layouts give the same tokens and values, shallow and deep, fused and continuous."""

import jax
import numpy as np
import pytest

import tqjax
from tests.conftest import LIBRARY_UNROLL_LAYERS
from tests.decoding.decode_helpers import PROMPTS, spread
from tqjax.api.decode import TQParams
from tqjax.decoding import loop, plan_for
from tqjax.models import ModelConfig, init_model, transformer


def _params(n_layers: int) -> TQParams:
    ks = jax.random.split(jax.random.key(3), 6)
    cfg = ModelConfig.tiny("llama", n_layers=n_layers, eos_token_id=2)
    sft, bl = (spread(init_model(cfg, ks[i]), ks[3 + i]) for i in (0, 1))
    rm = spread(init_model(cfg.replace(kind="reward"), ks[2]), ks[5])
    return TQParams(sft, bl, rm)


@pytest.mark.parametrize("n_layers", [2, LIBRARY_UNROLL_LAYERS + 1])
def test_scan_and_unroll_give_the_same_tokens(n_layers):
    params = _params(n_layers)
    config = tqjax.DecodeConfig(method="tq", k=3, horizon=3, max_new_tokens=5, diagnostics=True)
    outs = {layers: tqjax.decode(params, PROMPTS, config.replace(layers=layers))
            for layers in ("scan", "unroll")}
    assert outs["scan"].tokens == outs["unroll"].tokens
    for name in ("rewards", "kl"):
        np.testing.assert_allclose(getattr(outs["scan"], name), getattr(outs["unroll"], name), rtol=1e-4, atol=1e-5)
    for q_scan, q_unroll in zip(outs["scan"].diagnostics["q"], outs["unroll"].diagnostics["q"]):
        np.testing.assert_allclose(q_scan, q_unroll, rtol=1e-4, atol=1e-5)


def test_continuous_batching_takes_the_layout_too():
    params = _params(2)
    config = tqjax.DecodeConfig(method="tq", k=2, horizon=2, max_new_tokens=4)
    outs = [tqjax.decode(params, PROMPTS, config.replace(layers=layers), batch_size=2)
            for layers in ("scan", "unroll")]
    assert outs[0].tokens == outs[1].tokens


@pytest.mark.parametrize("layers, n_layers, one_device, unrolled", [
    ("auto", 2, True, True), ("auto", LIBRARY_UNROLL_LAYERS + 1, True, False), ("auto", 2, False, False),
    ("scan", 2, True, False), ("unroll", 6, True, True), ("unroll", 2, False, True)])
def test_the_loops_hold_the_layout_asked_for(library_layout, layers, n_layers, one_device, unrolled):
    params = TQParams(init_model(ModelConfig.tiny("llama", n_layers=n_layers), jax.random.key(0)))
    plan = plan_for(params, tqjax.DecodeConfig(method="sft", layers=layers))
    held = loop.loop_models(params, plan, None if one_device else "a mesh")["sft"]
    assert isinstance(held.params["layers"], tuple) == unrolled
    assert transformer.runs_unrolled(layers, n_layers, one_device) == unrolled


def test_an_unknown_layout_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown layers 'unrolled'"):
        tqjax.DecodeConfig(layers="unrolled")
    with pytest.raises(TypeError, match="layers must be a str"):
        tqjax.DecodeConfig(layers=1)
