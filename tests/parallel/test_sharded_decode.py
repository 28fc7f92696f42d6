"""Sharded decoding equals single-device decoding, for every mesh shape of 8 devices."""

import jax
import numpy as np
import pytest

import tqjax
from tqjax.models import ModelConfig, init_model

MESHES = [(8, 1), (4, 2), (2, 4), (1, 8)]
PROMPTS = [[5, 6, 7], [8, 9], [10, 11, 12, 13, 14], [3, 4], [20, 21, 22]]
CONFIGS = {
    "tq": tqjax.DecodeConfig(method="tq", k=3, horizon=2, max_new_tokens=5, rollout_temperature=1.0, seed=3),
    "bon": tqjax.DecodeConfig(method="bon", n=3, temperature=1.0, max_new_tokens=5, seed=4),
}


@pytest.fixture(scope="module")
def params():
    cfg = ModelConfig.tiny("llama", n_heads=8, n_kv_heads=8, vocab_size=64, mlp_dim=64)
    return tqjax.TQParams(sft=init_model(cfg, jax.random.key(0)), baseline=init_model(cfg, jax.random.key(1)),
                          reward=init_model(cfg.replace(kind="reward"), jax.random.key(2)))


@pytest.fixture(scope="module")
def single(params):
    return {name: tqjax.decode(params, PROMPTS, config) for name, config in CONFIGS.items()}


@pytest.mark.parametrize("shape", MESHES)
@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_output_does_not_depend_on_the_mesh(params, single, method, shape):
    out = tqjax.decode(params, PROMPTS, CONFIGS[method], mesh=tqjax.make_mesh(*shape))
    assert out.tokens == single[method].tokens
    np.testing.assert_allclose(out.rewards, single[method].rewards, atol=1e-4)
    np.testing.assert_allclose(out.kl, single[method].kl, atol=1e-4)


def _few_kv_heads(n_kv_heads):
    cfg = ModelConfig.tiny("llama", n_heads=8, n_kv_heads=n_kv_heads, vocab_size=64, mlp_dim=64)
    return tqjax.TQParams(sft=init_model(cfg, jax.random.key(5)), baseline=init_model(cfg, jax.random.key(6)),
                          reward=init_model(cfg.replace(kind="reward"), jax.random.key(7)))


@pytest.fixture(scope="module")
def few_kv_heads():
    """GQA with 2 kv heads and MQA with 1, both decoded on one device."""
    models = {kv: _few_kv_heads(kv) for kv in (2, 1)}
    return {kv: (p, tqjax.decode(p, PROMPTS, CONFIGS["tq"])) for kv, p in models.items()}


@pytest.mark.parametrize("shape", [(2, 4), (1, 8)])
@pytest.mark.parametrize("n_kv_heads", [2, 1])
def test_kv_heads_fewer_than_the_model_axis_are_replicated(few_kv_heads, n_kv_heads, shape):
    params, single = few_kv_heads[n_kv_heads]
    out = tqjax.decode(params, PROMPTS, CONFIGS["tq"], mesh=tqjax.make_mesh(*shape))
    assert out.tokens == single.tokens
    np.testing.assert_allclose(out.rewards, single.rewards, atol=1e-4)
    np.testing.assert_allclose(out.kl, single.kl, atol=1e-4)


def test_decode_refuses_a_mesh_the_heads_do_not_divide(params):
    bad = tqjax.TQParams(sft=init_model(ModelConfig.tiny("llama"), jax.random.key(0)))   # 4 query heads
    with pytest.raises(ValueError, match=r"n_heads=4 is not divisible by the mesh's 'model' axis of size 8 .*"
                                         r"a model axis of size 1, 2 or 4 works"):
        tqjax.decode(bad, PROMPTS, tqjax.DecodeConfig(method="sft", max_new_tokens=2), mesh=tqjax.make_mesh(1, 8))
