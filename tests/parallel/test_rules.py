"""The mesh and the sharding rules table: placement, loading into a mesh, clear errors."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import tqjax
from tqjax.models import ModelConfig, init_model
from tqjax.parallel import make_mesh, param_shardings, shard_model
from tqjax.parallel.rules import kv_replicas, replicate_kv_heads


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


def test_heads_not_divisible_by_the_model_axis_are_named_with_what_works():
    with pytest.raises(ValueError, match=r"n_heads=4 is not divisible by the mesh's 'model' axis of size 8 .*"
                                         r"a model axis of size 1, 2 or 4 works"):
        param_shardings(ModelConfig.tiny("gpt2"), make_mesh(1, 8))
    with pytest.raises(ValueError, match=r"mlp_dim=36 is not divisible by the mesh's 'model' axis of size 8 .*"
                                         r"of size 1, 2 or 4 works"):
        shard_model(init_model(ModelConfig.tiny("llama", n_heads=8, mlp_dim=36), jax.random.key(0)), make_mesh(1, 8))


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


@pytest.mark.parametrize("n_heads, n_kv_heads, model_axis, copies", [
    (4, 2, 4, 2), (8, 1, 8, 8), (8, 2, 2, 1), (8, 4, 8, 2), (6, 3, 2, 2), (12, 4, 6, 3)])
def test_kv_heads_fewer_than_the_model_axis_are_replicated(n_heads, n_kv_heads, model_axis, copies):
    cfg = ModelConfig.tiny("llama", n_heads=n_heads, n_kv_heads=n_kv_heads, d_model=8 * n_heads, mlp_dim=24)
    assert kv_replicas(cfg, model_axis) == copies
    model = init_model(cfg, jax.random.key(0))
    wide = model.replace(params=replicate_kv_heads(model.params, copies),
                         config=cfg.replace(n_kv_heads=n_kv_heads * copies))
    K2 = n_kv_heads * copies
    assert K2 % model_axis == 0 and n_heads % K2 == 0
    k = np.asarray(model.params["layers"]["k_DKH"])
    np.testing.assert_array_equal(np.asarray(wide.params["layers"]["k_DKH"]), np.repeat(k, copies, axis=2))
    tokens = np.arange(3, 15)[None]
    np.testing.assert_allclose(np.asarray(tqjax.logits(wide, tokens)), np.asarray(tqjax.logits(model, tokens)),
                               atol=1e-6)


@pytest.mark.parametrize("n_kv_heads, shape", [(2, (2, 4)), (1, (1, 8)), (2, (1, 8))])
def test_each_model_shard_holds_the_kv_heads_its_query_heads_read(n_kv_heads, shape):
    cfg = ModelConfig.tiny("llama", n_heads=8, n_kv_heads=n_kv_heads)
    model = init_model(cfg, jax.random.key(3))
    mesh = make_mesh(*shape)
    sharded = shard_model(model, mesh)
    model_axis = shape[1]
    assert sharded.config.n_kv_heads == model_axis and shard_model(sharded, mesh).config == sharded.config
    k = sharded.params["layers"]["k_DKH"]
    assert k.sharding.spec == P(None, None, "model", None)
    groups = cfg.n_heads // n_kv_heads
    q_heads_per_shard = cfg.n_heads // model_axis
    original = np.asarray(model.params["layers"]["k_DKH"])
    for shard in k.addressable_shards:
        j = shard.index[2].start                            # this shard's kv head = its first query head's
        assert shard.data.shape[2] == 1
        np.testing.assert_array_equal(np.asarray(shard.data)[:, :, 0], original[:, :, j * q_heads_per_shard // groups])
    tokens = np.arange(3, 15)[None]
    np.testing.assert_allclose(np.asarray(tqjax.logits(sharded, tokens)), np.asarray(tqjax.logits(model, tokens)),
                               atol=1e-5)


def test_load_with_a_mesh_replicates_kv_heads(tmp_path):
    model = init_model(ModelConfig.tiny("llama"), jax.random.key(4))          # 4 heads, 2 kv heads
    tqjax.save(model, tmp_path / "m")
    back = tqjax.load(tmp_path / "m", mesh=make_mesh(2, 4))
    assert back.config.n_kv_heads == 4 and back.params["layers"]["v_DKH"].sharding.spec == P(None, None, "model", None)
    tokens = np.arange(3, 15)[None]
    np.testing.assert_allclose(np.asarray(tqjax.logits(back, tokens)), np.asarray(tqjax.logits(model, tokens)),
                               atol=1e-5)


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


def test_the_newer_families_weights_follow_the_rules_table():
    """Gemma's sandwich norms and the q/k norms (Gemma 3, Qwen3) are replicated; the rest as Llama."""
    from tests.models.families import GEMMA
    model = shard_model(init_model(GEMMA.replace(n_heads=8, n_kv_heads=8), jax.random.key(0)), make_mesh(2, 4))
    layers = model.params["layers"]
    assert layers["q_norm"]["scale"].shape == (3, 8) and layers["q_norm"]["scale"].sharding.spec == P(None, None)
    assert layers["post_mlp_norm"]["scale"].sharding.spec == P(None, None)
    assert layers["q_DNH"].sharding.spec == P(None, None, "model", None)
