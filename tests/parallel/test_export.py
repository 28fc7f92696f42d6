"""The programs lower for the accelerators they are for: `jax.export` for CUDA and TPU from a CPU
host (no GPU or TPU in CI), with bfloat16 weights, on one device and on a sharded mesh."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import pytest
from jax import export
from jax.sharding import NamedSharding, PartitionSpec as P

import tqjax
from tqjax.api.decode import prepare
from tqjax.decoding import Knobs, engine, plan_for
from tqjax.models import ModelConfig, init_model
from tqjax.parallel import batch_sharding, make_mesh, param_shardings

PLATFORMS = ("cuda", "tpu")
CONFIGS = {
    "tq": tqjax.DecodeConfig(k=3, horizon=2, max_new_tokens=4),
    "sft": tqjax.DecodeConfig(method="sft", temperature=0.7, top_p=0.9, max_new_tokens=4),
    "bon": tqjax.DecodeConfig(method="bon", n=2, temperature=1.0, max_new_tokens=4),
}


@pytest.fixture(scope="module")
def params():
    cfg = ModelConfig.tiny("llama", n_heads=8, n_kv_heads=4)
    models = [init_model(cfg, jax.random.key(0), jnp.bfloat16),
              init_model(cfg, jax.random.key(1), jnp.bfloat16),
              init_model(cfg.replace(kind="reward"), jax.random.key(2), jnp.bfloat16)]
    return tqjax.TQParams(*models)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_exports_for_gpu_and_tpu(params, name):
    config = CONFIGS[name]
    arrays, _ = prepare(params, [[5, 6, 7], [8]], config)
    plan = plan_for(params, config)
    fn = jax.jit(lambda p, t, s, k, l, knobs: engine._decode_arrays(p, t, s, k, l, knobs, plan))
    exported = export.export(fn, platforms=PLATFORMS)(
        params, arrays["tokens_BT"], arrays["start_B"], arrays["keys_B"], arrays["live_B"],
        Knobs.from_config(config))
    assert exported.platforms == PLATFORMS
    text = exported.mlir_module()
    assert "bf16" in text and "while" in text


def test_exports_sharded_for_gpu(params):
    """On a (data 2, model 4) mesh: params by the rules, the batch over "data"."""
    config = CONFIGS["tq"]
    mesh = make_mesh(2, 4)
    arrays, _ = prepare(params, [[5, 6, 7], [8]], config, batch_multiple=2)
    placed = tqjax.TQParams(*(m.replace(params=jax.device_put(m.params, param_shardings(m.config, mesh)))
                              for m in (params.sft, params.baseline, params.reward)))
    arrays = {k: jax.device_put(v, batch_sharding(mesh, v.ndim)) for k, v in arrays.items()}
    plan = plan_for(params, config)
    args = (placed, arrays["tokens_BT"], arrays["start_B"], arrays["keys_B"], arrays["live_B"],
            jax.device_put(Knobs.from_config(config), NamedSharding(mesh, P())))
    fn = jax.jit(lambda p, t, s, k, l, knobs: engine._decode_arrays(p, t, s, k, l, knobs, plan),
                 in_shardings=jax.tree.map(lambda x: x.sharding, args))
    exported = export.export(fn, platforms=("cuda",))(*args)
    assert exported.nr_devices == 8
    shardings = set(re.findall(r"sdy\.sharding<@mesh, [^>]*>", exported.mlir_module()))
    assert 'sdy.sharding<@mesh, [{"data"}, {}]>' in shardings          # prompts over "data"
    assert any('{"model"}' in s for s in shardings)                     # heads over "model"


def test_the_cpu_upcast_is_chosen_by_platform():
    """XLA:CPU needs the float32 upcast; a GPU lowering must not carry it."""
    from tqjax.models.layers import einsum_f32

    a = jnp.ones((4, 8), jnp.bfloat16)
    fn = jax.jit(lambda a, b: einsum_f32("TD,DV->TV", a, b))
    gpu = export.export(fn, platforms=("cuda",))(a, a.T).mlir_module()
    cpu = export.export(fn, platforms=("cpu",))(a, a.T).mlir_module()
    assert "bf16" in gpu and "preferred" not in gpu
    assert fn(a, a.T).dtype == jnp.float32
    # the CPU lowering converts the operands before the dot; the GPU one dots bf16 -> f32
    gpu_dot = [line for line in gpu.splitlines() if "dot_general" in line]
    cpu_dot = [line for line in cpu.splitlines() if "dot_general" in line]
    assert any("bf16" in line and "f32" in line for line in gpu_dot), gpu_dot
    assert all("bf16" not in line for line in cpu_dot), cpu_dot
