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


def test_decode_refuses_a_mesh_the_heads_do_not_divide(params):
    bad = tqjax.TQParams(sft=init_model(ModelConfig.tiny("llama"), jax.random.key(0)))
    with pytest.raises(ValueError, match="n_kv_heads=2 is not divisible by the mesh's 'model' axis of size 4"):
        tqjax.decode(bad, PROMPTS, tqjax.DecodeConfig(method="sft", max_new_tokens=2), mesh=tqjax.make_mesh(2, 4))
