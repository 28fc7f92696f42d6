"""Uncertainty over prompts: percentile-bootstrap intervals of means, and a paired sign-flip test.

The prompt is the unit of resampling: every figure of `tqjax eval` is a mean over prompts, and two
methods decode the same prompts, so their difference is taken prompt by prompt (paired).
"""

from __future__ import annotations

import itertools

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
EXACT_UP_TO = 16        # prompts with a non-zero difference: enumerate all 2^n sign flips up to this


def bootstrap_ci(values_P, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval ``(lo, hi)`` of the mean of ``values_P`` over prompts.

    Prompts are resampled with replacement ``resamples`` times; the same ``seed`` gives the same
    interval. NaN entries (prompts without that score) are left out; all-NaN gives ``(nan, nan)``.
    """
    v = np.asarray(values_P, np.float64)
    if v.ndim != 1:
        raise ValueError(f"values_P must be 1-D (one value per prompt), got shape {v.shape}")
    if not 0 < level < 1 or resamples < 1:
        raise ValueError(f"need 0 < level < 1 and resamples >= 1, got level={level}, resamples={resamples}")
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    idx_RP = np.random.default_rng(seed).integers(0, v.size, size=(resamples, v.size))
    lo, hi = np.quantile(v[idx_RP].mean(axis=1), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def sign_flip_p(diff_P, permutations: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value of "mean difference = 0" by flipping the signs of paired differences.

    Under the null each prompt's difference is as likely negative as positive. With at most
    ``EXACT_UP_TO`` non-zero differences every sign vector is enumerated (exact); otherwise
    ``permutations`` random ones are drawn and p = (1 + hits) / (1 + permutations).
    """
    d = np.asarray(diff_P, np.float64)
    d = d[np.abs(d) > 1e-12]
    if d.size == 0:
        return 1.0
    observed = abs(d.sum()) - 1e-9 * max(1.0, abs(d).sum())
    if d.size <= EXACT_UP_TO:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
        return float(np.mean(np.abs(signs @ d) >= observed))
    signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(permutations, d.size))
    hits = int(np.sum(np.abs(signs @ d) >= observed))
    return (1 + hits) / (1 + permutations)


def paired_test(a_P, b_P, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0) -> dict:
    """``a`` against ``b`` on the same prompts: mean difference a − b with its bootstrap interval,
    prompts where a is better / tied / worse, and the sign-flip p-value."""
    a, b = np.asarray(a_P, np.float64), np.asarray(b_P, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores need equal 1-D shapes, got {a.shape} and {b.shape}")
    d = a - b
    lo, hi = bootstrap_ci(d, resamples, level, seed)
    return dict(mean_diff=float(d.mean()), ci=[lo, hi], p_value=sign_flip_p(d, seed=seed),
                better=int(np.sum(d > 1e-9)), tied=int(np.sum(np.abs(d) <= 1e-9)), worse=int(np.sum(d < -1e-9)),
                prompts=int(d.size))
