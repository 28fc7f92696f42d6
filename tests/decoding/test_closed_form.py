"""Sampled TQ* / CD against closed forms enumerated exactly on the tabular toy.

One step from a fixed prompt, repeated over many rows (one key each). With Q̂ the engine's
rollout estimate, the engine draws token z with probability
``P(z) = E_{rollouts}[softmax_c(log π_sft(c) + α·Q̂(c))(z)]``; the rollouts of different
candidates are independent, so P is a finite sum over every rollout outcome of every candidate,
enumerated here in float64 and compared with the engine's frequencies by a chi-square test. The
rollout policies are exact: the "aligned" baselines are the exact tilts ρ ∝ π_sft·exp(r/β) of the
toy (`toy.tilt`), so Q* is known in closed form too and the engine's mean Q̂ is checked against it.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

from tqjax.api.decode import TQParams, decode
from tqjax.decoding import DecodeConfig
from tqjax.models import toy

PROMPT = [1, 3]
ROWS = 2048
BETA = 0.8


def log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - np.logaddexp.reduce(x)


@pytest.fixture(scope="module")
def world():
    ks = jax.random.split(jax.random.key(7), 4)
    sft = toy.random_toy(ks[0], vocab=5, scale=1.0)
    r = toy.random_toy(ks[1], kind="reward", vocab=5)
    r_bl = toy.random_toy(ks[2], kind="reward", vocab=5)
    return sft, r, r_bl


def continuations(lm, seq, H):
    """Every H-token continuation of ``seq`` under ``lm``: list of (tokens, probability)."""
    out = []
    for tau in itertools.product(range(lm.vocab_size), repeat=H):
        logp = sum(lm.log_probs(list(seq) + list(tau[:i]))[tau[i]] for i in range(H))
        out.append((tau, np.exp(logp)))
    return out


def candidate_law(params, seq, z, config):
    """The law of Q̂(z): (values, probabilities) over every joint outcome of the M rollouts."""
    rollout_lm = params.baseline if config.method == "tq" else params.sft
    singles = []
    for tau, p in continuations(rollout_lm, list(seq) + [z], config.horizon):
        full = list(seq) + [z] + list(tau)
        r = params.reward.score(full)
        r_bl = params.baseline_reward.score(full) if params.baseline_reward is not None else 0.0
        singles.append((r, r_bl, p))
    values, probs = [], []
    for combo in itertools.product(singles, repeat=config.rollouts):
        r = np.array([c[0] for c in combo])
        p = np.prod([c[2] for c in combo])
        if config.transfer == "direct":
            q = r.mean()
        else:
            a = (r - np.array([c[1] for c in combo])) / config.beta
            q = np.sum(np.exp(a - a.max()) / np.exp(a - a.max()).sum() * r)
        values.append(q)
        probs.append(p)
    return np.array(values), np.array(probs)


def exact_choice(params, seq, config):
    """(candidates, P(engine picks each candidate), E[Q̂] per candidate)."""
    prior = log_softmax(params.sft.next_logits(seq))
    cand = list(np.argsort(-prior, kind="stable")[:config.k])
    laws = [candidate_law(params, seq, z, config) for z in cand]
    grids_q = np.meshgrid(*[law[0] for law in laws], indexing="ij")
    grids_p = np.meshgrid(*[law[1] for law in laws], indexing="ij")
    scores = np.stack([prior[z] + config.alpha * q for z, q in zip(cand, grids_q)], axis=-1)
    pick = np.exp(scores - np.logaddexp.reduce(scores, axis=-1, keepdims=True))
    weight = np.prod(np.stack(grids_p, axis=-1), axis=-1)
    probs = (pick * weight[..., None]).reshape(-1, len(cand)).sum(0)
    mean_q = np.array([np.sum(v * p) for v, p in laws])
    assert abs(weight.sum() - 1) < 1e-9
    return cand, probs, mean_q


def q_star(sft, reward, seq, z, H, beta):
    """E_{τ ~ π_sft·exp(r/β)}[r]: the target-optimal value, straight from π_sft and r."""
    items = [(p, reward.score(list(seq) + [z] + list(t))) for t, p in continuations(sft, list(seq) + [z], H)]
    w = np.array([p * np.exp(r / beta) for p, r in items])
    return float(np.sum(w * np.array([r for _, r in items])) / w.sum())


def chi_square_p(counts, probs):
    expected = probs * counts.sum()
    stat = float(np.sum((counts - expected) ** 2 / expected))
    return float(jax.scipy.special.gammaincc((len(counts) - 1) / 2, stat / 2))


def engine_draws(params, config):
    out = decode(params, [PROMPT] * ROWS, config.replace(max_new_tokens=1, diagnostics=True))
    tokens = np.array([t[0] for t in out.tokens])
    q = np.stack([d[0] for d in out.diagnostics["q"]])
    return tokens, q


CASES = {
    # direct transfer: the baseline is the exact tilt of π_sft toward the target reward r
    "direct": (dict(method="tq", k=3, horizon=2, rollouts=1, alpha=1.5), "r"),
    # indirect transfer: the baseline is tilted toward r_BL; weights exp((r - r_BL)/β), M = 2
    "indirect": (dict(method="tq", k=3, horizon=1, rollouts=2, alpha=2.0,
                      transfer="indirect", beta=BETA), "r_bl"),
    # the same with r_BL implicit in the baseline: β·(log ρ_BL − log π_sft)
    "indirect-implicit": (dict(method="tq", k=3, horizon=1, rollouts=2, alpha=2.0,
                               transfer="indirect", beta=BETA), "r_bl-implicit"),
    # controlled decoding: Q^{π_sft}, rollouts from the SFT model itself
    "cd": (dict(method="cd", k=4, horizon=2, rollouts=1, alpha=1.0), None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_sampled_frequencies_match_closed_form(world, case):
    sft, r, r_bl = world
    fields, tilt_to = CASES[case]
    config = DecodeConfig(select="sample", seed=11, rollout_temperature=1.0, **fields)   # sampled rollouts
    end = len(PROMPT) + config.horizon
    if tilt_to is None:
        params = TQParams(sft, None, r)
    elif tilt_to == "r":
        params = TQParams(sft, toy.tilt(sft, r, BETA, end), r)
    else:
        params = TQParams(sft, toy.tilt(sft, r_bl, BETA, end), r,
                          r_bl if tilt_to == "r_bl" else None)
    law_params = params
    if tilt_to == "r_bl-implicit":   # self-normalised weights: implicit r_BL = r_BL + const
        law_params = TQParams(sft, params.baseline, r, r_bl)
    cand, probs, mean_q = exact_choice(law_params, PROMPT, config)
    tokens, q = engine_draws(params, config)
    counts = np.array([np.sum(tokens == z) for z in cand])
    assert counts.sum() == ROWS
    assert chi_square_p(counts, probs) > 1e-3, (counts, probs * ROWS)
    # the engine's Q̂ estimates have the enumerated mean
    law_var = [np.var(q[:, c]) for c in range(len(cand))]
    np.testing.assert_allclose(q.mean(0), mean_q, atol=5 * np.sqrt(max(law_var) / ROWS) + 1e-6)
    if tilt_to == "r":   # direct transfer from the exact tilt estimates Q* without bias
        exact = [q_star(sft, r, PROMPT, z, config.horizon, BETA) for z in cand]
        np.testing.assert_allclose(mean_q, exact, rtol=1e-6)   # the tilt is stored in float32


def test_exact_q_greedy_and_sampled(world):
    """Greedy rollouts make Q̂ exact: greedy selection is the argmax of log π_sft + α·Q and
    sampled selection follows π_alg ∝ π_sft·exp(α·Q) over the candidates."""
    sft, r, _ = world
    params = TQParams(sft, toy.tilt(sft, r, BETA, len(PROMPT) + 2), r)
    config = DecodeConfig(method="tq", k=4, horizon=2, alpha=1.7, rollout_temperature=0.0)
    prior = log_softmax(sft.next_logits(PROMPT))
    cand = list(np.argsort(-prior)[:4])
    q = []
    for z in cand:
        seq = PROMPT + [z]
        for _ in range(2):
            seq = seq + [int(np.argmax(params.baseline.next_logits(seq)))]
        q.append(r.score(seq))
    score = prior[cand] + config.alpha * np.array(q)
    greedy = decode(params, [PROMPT], config.replace(max_new_tokens=1))
    assert greedy.tokens[0] == [cand[int(np.argmax(score))]]
    tokens, q_engine = engine_draws(params, config.replace(select="sample"))
    np.testing.assert_allclose(q_engine, np.broadcast_to(q, q_engine.shape), atol=1e-5)
    counts = np.array([np.sum(tokens == z) for z in cand])
    assert chi_square_p(counts, np.exp(log_softmax(score))) > 1e-3
