"""Every implementation of the decoding model protocol passes the same conformance checks."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tqjax.cli.options import SHIPPED
from tqjax.models import ModelConfig, init_model, toy
from tqjax.models.protocol import check_protocol

B, T, U, S = 2, 5, 4, 16


def _transformer(kind):
    return init_model(ModelConfig.tiny("llama", kind=kind), jax.random.key(0))


def _gold():
    import tqjax
    from tqjax.world.oracle import gold_reward_model

    return gold_reward_model(tqjax.load(SHIPPED / "sft").tokenizer)


IMPLEMENTATIONS = {
    "transformer-lm": lambda: _transformer("lm"),
    "transformer-reward": lambda: _transformer("reward"),
    "toy-lm": lambda: toy.random_toy(jax.random.key(1), vocab=5, eos_token_id=4),
    "toy-reward": lambda: toy.random_toy(jax.random.key(2), kind="reward", vocab=5),
    "gold-reward": _gold,
}


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
def test_conformance(name):
    model = IMPLEMENTATIONS[name]()
    check_protocol(model, name)
    V = int(model.vocab_size)
    rng = np.random.default_rng(0)
    tokens_BT = jnp.asarray(rng.integers(1, min(V, 50), size=(B, T)), jnp.int32)
    start_B = jnp.asarray([0, 2], jnp.int32)
    suffix_BU = jnp.asarray(rng.integers(1, min(V, 50), size=(B, U)), jnp.int32)
    per_token = (V,) if model.kind == "lm" else ()

    out, cache = model.prefill(tokens_BT, start_B, model.init_cache(B, S))
    assert out.shape == (B,) + per_token and out.dtype == jnp.float32
    appended, _ = model.append(suffix_BU[:, 0], cache)
    suffix, stepwise = model.init_suffix(cache, U), []
    for u in range(U):
        o, suffix = model.extend(suffix_BU[:, u], cache, suffix)
        assert o.shape == (B,) + per_token and o.dtype == jnp.float32
        stepwise.append(o)
    block = model.forward_suffix(suffix_BU, cache)
    assert block.shape == (B, U) + per_token and block.dtype == jnp.float32
    np.testing.assert_allclose(block, np.stack(stepwise, 1), atol=1e-5)
    np.testing.assert_allclose(appended, stepwise[0], atol=1e-5)   # append == a first extend
    jitted = jax.jit(lambda m, t: m.forward_suffix(t, cache))(model, suffix_BU)
    np.testing.assert_allclose(jitted, block, atol=1e-5)


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
def test_insert_gives_rows_their_own_positions(name):
    """A row put into a running cache (continuous batching) reads and writes as in its own cache,
    while the other rows, one token further on, go on as before; slot index B is skipped."""
    model = IMPLEMENTATIONS[name]()
    V = int(model.vocab_size)
    rng = np.random.default_rng(1)
    tok = lambda *shape: jnp.asarray(rng.integers(1, min(V, 50), size=shape), jnp.int32)
    _, running = model.append(tok(B), model.prefill(tok(B, T), jnp.asarray([0, 2], jnp.int32),
                                                    model.init_cache(B, S))[1])
    _, fresh = model.prefill(tok(2, T), jnp.asarray([3, 1], jnp.int32), model.init_cache(2, S))
    mixed = model.insert(running, fresh, jnp.asarray([1, B], jnp.int32))     # row 1 <- fresh row 0
    next_B, suffix_BU = tok(B), tok(B, U)
    out, _ = model.append(next_B, mixed)
    want_run, _ = model.append(next_B, running)
    want_new, _ = model.append(next_B[::-1], fresh)        # fresh row 0 gets next_B[1]
    np.testing.assert_allclose(out[0], want_run[0], atol=1e-5)
    np.testing.assert_allclose(out[1], want_new[0], atol=1e-5)
    block = model.forward_suffix(suffix_BU, mixed)
    np.testing.assert_allclose(block[0], model.forward_suffix(suffix_BU, running)[0], atol=1e-5)
    np.testing.assert_allclose(block[1], model.forward_suffix(suffix_BU[::-1], fresh)[0], atol=1e-5)
    o, _ = model.extend(suffix_BU[:, 0], mixed, model.init_suffix(mixed, U))
    np.testing.assert_allclose(o, block[:, 0], atol=1e-5)


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
def test_tokenizers_stay_out_of_the_tree(name):
    model = IMPLEMENTATIONS[name]()
    named = dataclasses.replace(model, tokenizer=object())
    assert jax.tree.structure(named) == jax.tree.structure(model)     # not part of a jit key
    rebuilt = jax.tree.unflatten(jax.tree.structure(named), jax.tree.leaves(named))
    assert rebuilt.tokenizer is None


class NotAModel:
    kind = "lm"
    vocab_size = 5

    def prefill(self, *args):
        pass


@pytest.mark.parametrize("model, message", [
    (NotAModel(), r"NotAModel\) does not implement the decoding model protocol: missing max_length, "
                  r"stop_token_ids, init_cache"),
    (toy.random_toy(jax.random.key(0)).__class__(jnp.zeros((2, 3, 5)), kind="policy"),
     "kind must be 'lm' or 'reward'"),
])
def test_protocol_errors(model, message):
    with pytest.raises(TypeError, match=message):
        check_protocol(model, "TQParams.sft")


def test_decode_refuses_a_non_model():
    import tqjax

    sft = toy.random_toy(jax.random.key(0), eos_token_id=4)
    with pytest.raises(TypeError, match="TQParams.reward .NotAModel. does not implement"):
        tqjax.decode(tqjax.TQParams(sft, sft, NotAModel()), [[1, 2]], tqjax.DecodeConfig(k=2))
