"""The mesh and the sharding rules table: placement, loading into a mesh, clear errors."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import tqjax
from tqjax.models import ModelConfig, init_model
from tqjax.parallel import make_mesh, param_shardings, shard_model


def test_eight_virtual_devices():
    assert len(jax.devices()) == 8


def test_mesh_axes_and_types():
    mesh = make_mesh(2, 4)
    assert mesh.axis_names == ("data", "model") and mesh.devices.shape == (2, 4)
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)
    assert make_mesh(model=2).devices.shape == (4, 2)


def test_mesh_that_does_not_match_the_devices():
    with pytest.raises(ValueError, match=r"mesh \(3, 2\) needs 6 devices, but 8 are available"):
        make_mesh(3, 2)
    with pytest.raises(ValueError, match="model=3 does not divide the 8 devices"):
        make_mesh(model=3)
    with pytest.raises(ValueError, match="mesh axis data must be a positive int"):
        make_mesh(0, 8)


def test_heads_not_divisible_by_the_model_axis_are_named():
    cfg = ModelConfig.tiny("llama")              # 4 heads, 2 kv heads
    with pytest.raises(ValueError, match=r"n_kv_heads=2 is not divisible by the mesh's 'model' axis of size 4"):
        param_shardings(cfg, make_mesh(2, 4))
    with pytest.raises(ValueError, match=r"n_heads=4 is not divisible by the mesh's 'model' axis of size 8"):
        param_shardings(ModelConfig.tiny("gpt2"), make_mesh(1, 8))


def test_params_follow_the_rules_table():
    cfg = ModelConfig.tiny("llama", n_heads=8, n_kv_heads=8)
    model = shard_model(init_model(cfg, jax.random.key(0)), make_mesh(2, 4))
    layers = model.params["layers"]                       # stacked: a leading layers axis, never sharded
    assert layers["q_DNH"].sharding.spec == P(None, None, "model", None)
    assert layers["o_NHD"].sharding.spec == P(None, "model", None, None)
    assert layers["down_FD"].sharding.spec == P(None, "model", None)
    assert layers["attn_norm"]["scale"].sharding.spec == P(None, None)
    assert model.params["embed_VD"].sharding.spec == P(None, None)
    assert layers["q_DNH"].addressable_shards[0].data.shape == (2, 32, 2, 4)


def test_load_restores_into_the_mesh(tmp_path):
    cfg = ModelConfig.tiny("neox", n_heads=4)
    model = init_model(cfg, jax.random.key(1))
    tqjax.save(model, tmp_path / "m")
    mesh = make_mesh(2, 4)
    back = tqjax.load(tmp_path / "m", mesh=mesh)
    up = back.params["layers"]["up_DF"]
    assert up.sharding.spec == P(None, None, "model") and len(up.addressable_shards) == 8
    np.testing.assert_array_equal(np.asarray(up), np.asarray(model.params["layers"]["up_DF"]))
    tokens = np.arange(3, 15)[None]
    np.testing.assert_allclose(np.asarray(tqjax.logits(back, tokens)), np.asarray(tqjax.logits(model, tokens)), atol=1e-5)
