"""Bootstrap intervals and the paired sign-flip test on data whose answers are known."""

import numpy as np
import pytest

from tqjax.eval.stats import bootstrap_ci, paired_test, sign_flip_p


def test_interval_is_ordered_deterministic_and_brackets_the_mean():
    v = np.random.default_rng(0).normal(1.0, 2.0, size=40)
    lo, hi = bootstrap_ci(v, seed=3)
    assert lo < v.mean() < hi
    assert bootstrap_ci(v, seed=3) == (lo, hi)
    assert bootstrap_ci(v, seed=4) != (lo, hi)
    assert bootstrap_ci(np.full(7, 2.5)) == (2.5, 2.5)


def test_interval_narrows_like_one_over_root_n():
    rng = np.random.default_rng(1)
    small, large = rng.normal(size=25), rng.normal(size=2500)
    w_small = np.subtract(*bootstrap_ci(small)[::-1])
    w_large = np.subtract(*bootstrap_ci(large)[::-1])
    assert 5 < w_small / w_large < 15                  # sqrt(100) = 10
    assert abs(w_large - 2 * 1.96 / np.sqrt(2500)) < 0.01


def test_coverage_of_the_true_mean_is_near_95_percent():
    rng = np.random.default_rng(2)
    hits = [lo <= 0.0 <= hi for lo, hi in (bootstrap_ci(rng.normal(size=30), resamples=1000, seed=i)
                                           for i in range(300))]
    assert 0.88 <= np.mean(hits) <= 0.99


def test_nan_prompts_are_left_out_and_bad_input_is_refused():
    assert bootstrap_ci([1.0, np.nan, 1.0]) == (1.0, 1.0)
    assert all(np.isnan(bootstrap_ci([np.nan, np.nan])))
    with pytest.raises(ValueError, match=r"values_P must be 1-D \(one value per prompt\), got shape \(2, 2\)"):
        bootstrap_ci(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="need 0 < level < 1"):
        bootstrap_ci([1.0, 2.0], level=1.5)


@pytest.mark.parametrize("diff, p", [
    ([1.0] * 5, 2 / 32),                 # all five prompts favour A: only the all-same signs are as extreme
    ([3.0, 1.0, 1.0], 2 / 8),            # ±3±1±1: |sum| >= 5 twice in eight
    ([2.0, 1.0], 2 / 4),
    ([1.0, -1.0, 2.0, -2.0], 1.0),       # symmetric: no evidence
    ([0.0, 0.0, 0.0], 1.0),              # all ties
    ([0.0, 1.0, 0.0, 1.0], 2 / 4),       # ties carry no sign
])
def test_sign_flip_p_exact(diff, p):
    assert sign_flip_p(diff) == pytest.approx(p)


def test_paired_test_on_a_constructed_shift():
    rng = np.random.default_rng(5)
    b = rng.normal(size=60)
    a = b + 0.5 + 0.1 * rng.normal(size=60)            # A better on (almost) every prompt
    t = paired_test(a, b)
    assert t["p_value"] <= 2e-4 and t["ci"][0] > 0.3 and t["ci"][1] < 0.7
    assert t["mean_diff"] == pytest.approx(np.mean(a - b))
    assert t["better"] + t["tied"] + t["worse"] == t["prompts"] == 60
    noise = paired_test(b + rng.normal(size=60), b)
    assert noise["p_value"] > 0.05 or noise["ci"][0] < 0 < noise["ci"][1]
    assert paired_test(a, b, seed=1) == paired_test(a, b, seed=1)
    with pytest.raises(ValueError, match=r"paired scores need equal 1-D shapes, got \(3,\) and \(2,\)"):
        paired_test([1, 2, 3], [1, 2])
