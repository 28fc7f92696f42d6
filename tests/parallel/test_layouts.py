"""Layouts stated, not hoped for: the caches and the outputs of a decode are laid out by the rules
table on every mesh shape, and the memory planner's per-device figure holds on each of them."""

import jax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import tqjax
from tqjax.api.inputs import _prepare
from tqjax.api.params import place_arrays, place_params
from tqjax.decoding import Knobs, engine, loop
from tqjax.models import ModelConfig, init_model
from tqjax.parallel import make_mesh
from tqjax.decoding.memory import plan

# 8 query heads and MLP 256 split over any model axis up to 8; 2 kv heads are replicated on 4 and 8
LLAMA = ModelConfig.llama(vocab_size=512, d_model=128, n_layers=2, n_heads=8, n_kv_heads=2,
                          mlp_dim=256, max_positions=256, eos_token_id=2)
MESHES = [(8, 1), (1, 8), (2, 4), (4, 2)]
B, T = 8, 64
CONFIG = tqjax.DecodeConfig(k=8, horizon=8, max_new_tokens=16)
# measured planner / compiled per device on these meshes (XLA:CPU, jax 0.10): see benchmarks/README
PLANNER_TOLERANCE = 0.10


@pytest.fixture(scope="module")
def params():
    return tqjax.TQParams(sft=init_model(LLAMA, jax.random.key(0)),
                          baseline=init_model(LLAMA, jax.random.key(1)),
                          reward=init_model(LLAMA.replace(kind="reward"), jax.random.key(2)))


def _placed(params, mesh):
    arrays, _, plan_ = _prepare(params, [[5] * T] * B, CONFIG, batch_multiple=mesh.shape["data"])
    placed, arrays = place_params(params, mesh), place_arrays(arrays, mesh)
    return placed, arrays, plan_


def _is(x, mesh, *spec):
    return x.sharding.is_equivalent_to(NamedSharding(mesh, P(*spec)), x.ndim)


@pytest.mark.parametrize("shape", MESHES)
def test_caches_and_outputs_follow_the_rules(params, shape):
    mesh = make_mesh(*shape)
    placed, arrays, plan_ = _placed(params, mesh)
    models = {role: getattr(placed, role) for role in plan_.active}
    caches, _ = jax.jit(loop.prefill, static_argnames=("slots", "mesh"))(
        models, arrays["tokens_BT"], arrays["start_B"], slots=T + CONFIG.max_new_tokens, mesh=mesh)
    for role, cache in caches.items():
        assert cache.k.shape[2] % shape[1] == 0                  # kv heads (replicated) split evenly
        for leaf in (cache.k, cache.v):                          # [L, B, K, S, H]
            assert _is(leaf, mesh, None, "data", "model", None, None), (role, leaf.sharding)
        assert _is(cache.start_B, mesh, "data") and _is(cache.read_B, mesh, "data")
    out = engine.decode_arrays(placed, arrays["tokens_BT"], arrays["start_B"], arrays["keys_B"],
                               arrays["live_B"], Knobs.from_config(CONFIG), plan=plan_, mesh=mesh)
    for name, x in out.items():
        if x.size == 0:           # diagnostics off: [B, 0, k], no layout to speak of
            continue
        expected = ("data",) + (None,) * (x.ndim - 1) if x.ndim else ()
        assert _is(x, mesh, *expected), (name, x.sharding)


@pytest.mark.parametrize("shape", MESHES)
def test_planner_per_device_matches_the_compiled_program(params, shape):
    mesh = make_mesh(*shape)
    placed, arrays, plan_ = _placed(params, mesh)
    compiled = engine.decode_arrays.lower(
        placed, arrays["tokens_BT"], arrays["start_B"], arrays["keys_B"], arrays["live_B"],
        Knobs.from_config(CONFIG), plan=plan_, mesh=mesh).compile()
    m = compiled.memory_analysis()
    measured = m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
    estimate = plan(params, CONFIG, B, T, mesh=mesh).total
    assert abs(estimate / measured - 1) <= PLANNER_TOLERANCE, (shape, estimate, measured)


def test_planner_counts_replicated_kv_heads():
    """6 kv heads on a model axis of 4 are stored as 12 (lcm), 3 per device, not ceil(6/4) = 2."""
    cfg = ModelConfig.llama(vocab_size=64, d_model=48, n_layers=2, n_heads=12, n_kv_heads=6,
                            mlp_dim=64, max_positions=64)
    configs = {"sft": cfg}
    config = tqjax.DecodeConfig(method="sft", max_new_tokens=8)
    per_device = plan(configs, config, 1, 8, mesh=(1, 4)).kv_cache["sft"]
    one_device = plan(configs, config, 1, 8).kv_cache["sft"]
    assert per_device * 6 == one_device * 3          # 3 of 6 heads' worth per device
