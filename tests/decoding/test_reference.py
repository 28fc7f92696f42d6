"""The jitted engine against the slow whole-sequence reference (`decode_reference`)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.decoding import decode_reference as ref
from tests.decoding.decode_helpers import assert_same
from tqjax.api.decode import TQParams, decode
from tqjax.decoding import DecodeConfig

TQ = DecodeConfig(method="tq", k=3, horizon=3, rollouts=2, max_new_tokens=5, seed=3, rollout_temperature=1.0)

# (config, archs it runs on): every method on llama, the tq family again on gpt2, tq and plain
# decoding on GPT-NeoX (partial rotary, parallel residual), TQ* on the Gemma-style model (every
# newer-family feature, sliding windows shorter than the sequences) and plain decoding on Phi-3's.
CASES = {
    "tq": (TQ, ("llama", "gpt2", "neox", "gemma")),
    "cd": (TQ.replace(method="cd", rollout_temperature=0.0), ("llama",)),
    "args": (TQ.replace(method="args", alpha=2.0), ("gpt2",)),
    "tq-indirect-implicit": (TQ.replace(transfer="indirect", beta=0.5, select="sample"), ("llama",)),
    "tq-indirect-model": (TQ.replace(transfer="indirect", beta=2.0, proposal="baseline"), ("gpt2",)),
    "bon": (DecodeConfig(method="bon", n=3, temperature=1.0, top_k=20, max_new_tokens=5, seed=1),
            ("llama", "gpt2")),
    "sft": (DecodeConfig(method="sft", max_new_tokens=5), ("llama", "gpt2", "neox", "phi3")),
    "baseline": (DecodeConfig(method="baseline", temperature=0.8, top_p=0.9, max_new_tokens=5),
                 ("llama",)),
}


PAIRS = [(case, arch) for case, (_, archs) in CASES.items() for arch in archs]


@pytest.mark.parametrize("case, tiny", PAIRS, indirect=["tiny"], ids=[f"{c}-{a}" for c, a in PAIRS])
def test_transformer_matches_reference(tiny, prompts, case):
    _, params, rbl = tiny
    config, _ = CASES[case]
    if case == "tq-indirect-model":
        params = TQParams(params.sft, params.baseline, params.reward, rbl)
    out = decode(params, prompts, config)
    expected, _ = ref.decode(params, prompts, config, pad_to=32)
    assert_same(out, expected)


def test_some_rows_end_at_eos(tiny, prompts):
    _, params, _ = tiny
    out = decode(params, prompts, CASES["sft"][0])
    lengths = [len(t) for t in out.tokens]
    assert min(lengths) < 5 and max(lengths) == 5, lengths


TOY_CASES = {
    "tq-sample": DecodeConfig(method="tq", k=3, horizon=2, rollouts=3, select="sample",
                              max_new_tokens=6, seed=5, alpha=1.5, diagnostics=True, rollout_temperature=1.0),
    "tq-indirect-implicit": DecodeConfig(method="tq", k=4, horizon=2, rollouts=3,
                                         transfer="indirect", beta=0.7, max_new_tokens=6,
                                         diagnostics=True, rollout_temperature=1.0),
    "tq-indirect-model-unnormalized": DecodeConfig(
        method="tq", k=2, horizon=3, rollouts=2, transfer="indirect", beta=1.3,
        weights="unnormalized", proposal="baseline", max_new_tokens=6, diagnostics=True,
        rollout_temperature=1.0),
    "cd": DecodeConfig(method="cd", k=3, horizon=2, rollouts=2, max_new_tokens=6, seed=2,
                       diagnostics=True, rollout_temperature=1.0),
    "args-ignore-eos": DecodeConfig(method="args", k=5, max_new_tokens=6, ignore_eos=True,
                                    diagnostics=True),
    "bon-baseline": DecodeConfig(method="bon", n=4, proposal="baseline", temperature=1.2,
                                 top_p=0.8, max_new_tokens=6),
}
TOY_PROMPTS = [[0, 1, 2], [3], [2, 2, 0, 1, 3, 0]]


@pytest.mark.parametrize("case", list(TOY_CASES))
def test_toy_matches_reference(toys, case):
    params, rbl = toys
    config = TOY_CASES[case]
    if "model" in case:
        params = TQParams(params.sft, params.baseline, params.reward, rbl)
    out = decode(params, TOY_PROMPTS, config)
    expected, stats = ref.decode(params, TOY_PROMPTS, config)
    assert_same(out, expected)
    if config.diagnostics:
        for i, r in enumerate(expected):
            np.testing.assert_array_equal(out.diagnostics["rank"][i], r["rank"])
            np.testing.assert_allclose(out.diagnostics["q"][i], np.array(r["q"]), atol=1e-4,
                                       rtol=1e-4)
    if config.method in ("tq", "cd"):
        assert stats["eos_rollouts"] > 0    # some rollouts ended at EOS
