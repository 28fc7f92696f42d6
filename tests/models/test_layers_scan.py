"""The layers run as one `lax.scan` over stacked params: the program does not grow with depth.
Shallow models (at most `transformer.UNROLL_LAYERS` layers) run them unrolled inside the decoding
loops, from per-layer weights split out once (`Model.for_loops`), with the same outputs."""

import jax
import jax.numpy as jnp
import pytest

import tqjax
from tqjax.api.decode import TQParams, prepare
from tqjax.decoding import Knobs, engine, plan_for
from tests.models.families import GEMMA
from tqjax.models import ModelConfig, init_model, transformer

pytestmark = pytest.mark.usefixtures("library_layout")     # the library's ``auto`` rule (tests/conftest.py)


def _scans(jaxpr) -> list[int]:
    """The lengths of every scan in ``jaxpr``, nested ones included."""
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            out.append(eqn.params["length"])
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else [value]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    out += _scans(inner)
    return out


@pytest.mark.parametrize("arch", ["llama", "gpt2", "neox"])
def test_every_pass_runs_the_layers_as_one_scan(arch):
    L = 5
    model = init_model(ModelConfig.tiny(arch, n_layers=L), jax.random.key(0))
    assert model.params["layers"]["q_DNH"].shape[0] == L
    tok_BT, tok_B = jnp.ones((2, 6), jnp.int32), jnp.ones((2,), jnp.int32)
    cache = model.init_cache(2, 9)
    assert cache.k.shape == (L, 2, model.config.n_kv_heads, 9, model.config.head_dim)
    _, filled = model.prefill(tok_BT, jnp.zeros(2, jnp.int32), cache)
    suffix = model.init_suffix(filled, 3)
    passes = {
        "forward": lambda m: m.forward(tok_BT),
        "prefill": lambda m: m.prefill(tok_BT, jnp.zeros(2, jnp.int32), cache),
        "append": lambda m: m.append(tok_B, filled),
        "extend": lambda m: m.extend(tok_B, filled, suffix),
        "forward_suffix": lambda m: m.forward_suffix(tok_BT[:, :3], filled),
    }
    for name, fn in passes.items():
        assert _scans(jax.make_jaxpr(fn)(model).jaxpr) == [L], name


def _lowered_tq_program(n_layers: int) -> str:
    cfg = ModelConfig.tiny("llama", n_layers=n_layers)
    ks = jax.random.split(jax.random.key(0), 3)
    params = TQParams(init_model(cfg, ks[0]), init_model(cfg, ks[1]), init_model(cfg.replace(kind="reward"), ks[2]))
    config = tqjax.DecodeConfig(method="tq", k=3, horizon=2, max_new_tokens=3)
    arrays, _ = prepare(params, [[5, 6, 7], [8, 9]], config)
    return engine.decode_arrays.lower(params, arrays["tokens_BT"], arrays["start_B"], arrays["keys_B"],
                                      arrays["live_B"], Knobs.from_config(config),
                                      plan=plan_for(params, config)).as_text()


def test_the_tq_program_has_the_same_operations_at_any_depth():
    shallow, deep = _lowered_tq_program(transformer.UNROLL_LAYERS + 1), _lowered_tq_program(16)
    assert len(deep.splitlines()) == len(shallow.splitlines())
    assert deep.count("stablehlo.while") == shallow.count("stablehlo.while")
    assert deep.count("stablehlo.dot_general") == shallow.count("stablehlo.dot_general")


def test_shallow_models_run_unrolled_in_the_loops():
    """At most `UNROLL_LAYERS` layers: the decoding program holds each layer's dots (no scan over
    layers), so every added layer adds the same number of dots; past it, none."""
    dots = {L: _lowered_tq_program(L).count("stablehlo.dot_general") for L in (1, 2, 3)}
    per_layer = dots[2] - dots[1]
    assert per_layer > 0 and dots[3] - dots[2] == per_layer
    assert _lowered_tq_program(transformer.UNROLL_LAYERS).count("stablehlo.dot_general") == \
        dots[1] + (transformer.UNROLL_LAYERS - 1) * per_layer


@pytest.mark.parametrize("arch", ["llama", "gpt2", "neox", "gemma"])
def test_split_layers_gives_the_same_outputs(arch):
    """Unrolled (each layer's window and RoPE base static) and scanned (traced) give the same."""
    config = GEMMA if arch == "gemma" else ModelConfig.tiny(arch, n_layers=3)
    model = init_model(config, jax.random.key(1))
    split = model.for_loops()
    assert isinstance(split.params["layers"], tuple) and len(split.params["layers"]) == 3
    assert split.for_loops() is split
    deep = init_model(config.replace(n_layers=transformer.UNROLL_LAYERS + 1, layer_types=()), jax.random.key(1))
    assert deep.for_loops() is deep                      # deeper: the scan stays
    tok_BT, tok_B = jnp.arange(12).reshape(2, 6) % 7 + 1, jnp.array([3, 4])
    start_B = jnp.array([0, 2])
    for m in (model, split):
        assert _scans(jax.make_jaxpr(lambda m: m.forward(tok_BT))(m).jaxpr) == ([3] if m is model else [])
    outs = []
    for m in (model, split):
        out, cache = m.prefill(tok_BT, start_B, m.init_cache(2, 9))
        app, cache = m.append(tok_B, cache)
        ext, suffix = m.extend(tok_B, cache, m.init_suffix(cache, 2))
        if m is split:      # the loops' caches: one buffer per layer
            assert isinstance(cache.k, tuple) and len(cache.k) == 3 and isinstance(suffix.v, tuple)
        stack = lambda x: jnp.stack(x) if isinstance(x, tuple) else x     # noqa: E731
        outs.append((m.forward(tok_BT), out, app, ext, stack(suffix.k), m.forward_suffix(tok_BT[:, :2], cache),
                     stack(cache.k), stack(cache.v)))
    for a, b in zip(*outs):
        assert jnp.allclose(a, b, atol=1e-5), (a, b)

