"""Keeps benchmarks/throughput.py from rotting: its comparison at the smallest size, tokens only."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))

import throughput  # noqa: E402  (benchmarks/ is on the path now; an import error fails the test)
pytestmark = pytest.mark.filterwarnings("ignore:.*past_key_values.*:FutureWarning")


@pytest.mark.parametrize("arch", ["llama", "neox"])
def test_tqjax_tokens_match_the_torch_references(arch):
    setting = throughput.Setting(arch=arch, prompts=2, prompt_len=5, k=2, horizon=2, new_tokens=2,
                                 size="tiny")
    res = throughput.compare(setting, authors_prompts=2, reps=1, log=lambda msg: None)
    assert set(res["impl"]) == {"tqjax", "torch-authors", "torch-batched"}
    assert all(len(t) == 2 for t in res["impl"]["tqjax"]["tokens"])
    assert res["agree"] == {"torch-authors": None, "torch-batched": None}


def test_a_token_forward_counts_every_matmul_weight_twice():
    """`token_forward_flops` against the weights the model holds: 2 FLOPs per weight of every
    layer matrix and of the head, plus the attention term that grows with the context."""
    import jax

    from tqjax.models import ModelConfig, init_model

    for kind in ("lm", "reward"):
        model = init_model(ModelConfig.tiny("llama", n_layers=3).replace(kind=kind), jax.random.key(0))
        matrices = sum(x.size for x in jax.tree.leaves(model.params["layers"]) if x.ndim >= 3)
        head = model.params["embed_VD"].size if kind == "lm" else model.params["score_D"].size
        assert kind == "reward" or model.config.tie_embeddings or model.params["head_DV"].size == head
        c = model.config
        assert throughput.token_forward_flops(model, 0) == 2 * (matrices + head)
        assert throughput.token_forward_flops(model, 7) - throughput.token_forward_flops(model, 0) == \
            4 * c.n_layers * c.n_heads * c.head_dim * 7


def test_ideal_in_order_gain_of_refilled_slots():
    import variable_length

    # static: batches [1, 4] and [1, 1] run 4 + 1 steps on 2 rows; refilled in order, slot 0 takes
    # prompts 0, 2 and 3 (ending at steps 1, 2, 3) while slot 1 runs prompt 1 to step 4
    assert variable_length.ideal_gain([1, 4, 1, 1], 2) == (10 / 8, 10, 8)
    assert variable_length.ideal_gain([3, 3, 3], 2)[0] == 1.0


def test_variable_length_static_and_continuous_agree():
    import variable_length
    from tqjax.world import sample_prompts

    res = variable_length.compare(variable_length.shipped(), sample_prompts(6, seed=1),
                                  variable_length.METHODS["sft"].replace(max_new_tokens=8), 2,
                                  log=lambda msg: None)
    assert res["same"] and res["tokens"] > 0 and 0 < res["cont_live"] <= 1


def test_the_profiler_attributes_thunk_time_to_tqjax_source_lines():
    """`profile_tq`'s pieces on a tiny model: the traced call's thunks carry time, the matmul
    thunks are named as such, and the optimized HLO maps them back to the tqjax lines that
    made them (the MLP's einsums in `transformer._mlp`)."""
    import jax

    import profile_tq
    from tqjax.api.decode import TQParams
    from tqjax.models import ModelConfig, init_model

    model = init_model(ModelConfig.tiny("llama", n_layers=2), jax.random.key(0))
    tokens = jax.numpy.zeros((4, 8), jax.numpy.int32)
    compiled = jax.jit(model.forward).lower(tokens).compile()
    ns, calls, wall = profile_tq.thunk_times(lambda: compiled(tokens).block_until_ready())
    assert wall > 0 and sum(ns.values()) > 0 and all(calls[name] >= 1 for name in ns)
    where = profile_tq.sources(compiled.as_text())
    matmuls = [name for name in ns if profile_tq.kind_of(name) == "matmul"]
    assert matmuls, sorted(ns)
    assert any(where.get(name, "").startswith("transformer.py:") and "_mlp" in where[name] for name in matmuls)
    assert profile_tq.kind_of("dynamic-slice_bitcast_fusion.3") == "slice or copy"
    assert profile_tq.kind_of("multiply_add_fusion") == "elementwise or other"
    rate = profile_tq.ceiling(TQParams(sft=model, baseline=model), rows=4, split=True, reps=1)
    assert 0 < rate < float("inf")
