"""Released-code mode: `proposal="baseline"`, greedy rollouts and unnormalised weights reproduce
what the authors' code does (docs/design.md, "The authors' released code"), written out here:
per step, the top-k of the DPO model's raw logits, greedy continuations of H tokens that stop at
EOS, and the argmax of ``logit + α·value`` with value ``r`` (direct) or ``exp(0.5·(r₂ − r₁))·r₂``
(indirect, two reward models; β = 2), running the whole token budget (no stop at EOS)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.decoding import decode_reference as ref
from tqjax.api.decode import TQParams, decode
from tqjax.decoding import DecodeConfig

RELEASED = DecodeConfig(method="tq", k=4, horizon=3, alpha=1.0, proposal="baseline",
                        rollout_temperature=0.0, weights="unnormalized", beta=2.0,
                        ignore_eos=True, max_new_tokens=5)


def released_decode(fns, prompt, k, H, alpha, max_new, eos, indirect):
    """(the response's tokens, each step's k candidate values, their weights exp((r − r_BL)/β))."""
    seq, values_per_step, weights_per_step = list(prompt), [], []
    for _ in range(max_new):
        logits = fns.next_logits("baseline", seq)
        cand = np.argsort(-logits, kind="stable")[:k]
        values, weights = [], []
        for z in cand:
            roll = [int(z)]
            for _ in range(H):
                if roll[-1] in eos:
                    break
                roll.append(int(np.argmax(fns.next_logits("baseline", seq + roll))))
            r2 = fns.score("reward", seq + roll)
            if indirect:
                weights.append(np.exp(0.5 * (r2 - fns.score("baseline_reward", seq + roll))))
            else:
                weights.append(1.0)
            values.append(weights[-1] * r2)
        values_per_step.append(values)
        weights_per_step.append(weights)
        seq.append(int(cand[int(np.argmax(logits[cand] + alpha * np.array(values)))]))
    return seq[len(prompt):], np.array(values_per_step), np.array(weights_per_step)


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)     # one architecture is enough here
@pytest.mark.parametrize("transfer", ["direct", "indirect"])
def test_released_code_mode(tiny, prompts, transfer):
    _, params, rbl = tiny
    eos = set(params.sft.stop_token_ids)
    if transfer == "indirect":
        # The released code loads one checkpoint twice, which makes every weight
        # exp((r - r_BL)/β) = 1; two different reward models test the weight itself.
        params = TQParams(params.sft, params.baseline, params.reward, rbl)
    out = decode(params, prompts, RELEASED.replace(transfer=transfer, diagnostics=True))
    fns = ref.Fns(params, pad_to=32)
    for i, prompt in enumerate(prompts):
        tokens, values, weights = released_decode(fns, prompt, RELEASED.k, RELEASED.horizon,
                                                  RELEASED.alpha, RELEASED.max_new_tokens, eos,
                                                  transfer == "indirect")
        assert out.tokens[i] == tokens
        # Q̂ of every candidate at every step: r, or exp((r − r_BL)/β)·r with r ≠ r_BL
        np.testing.assert_allclose(out.diagnostics["q"][i], values, rtol=1e-4, atol=1e-4)
        if transfer == "indirect":      # the weights are far from 1, so they are tested
            assert np.abs(np.log(weights)).max() > 0.5
