"""Validation/test split and the choice of α (or N) on validation, on synthetic per-α results."""

import math

import pytest

from tqjax.eval.select import choose, select, split_list, split_stream


def summary(gold, kl):
    return {"gold_reward": gold, "kl": kl}


def test_choice_is_the_best_validation_mean_ties_to_lower_kl():
    val = {0.5: summary(1.0, 1.0), 1.0: summary(2.0, 3.0), 2.0: summary(2.0, 5.0), 4.0: summary(1.5, 9.0)}
    assert choose(val, "gold_reward") == 1.0
    assert choose({**val, 8.0: summary(math.nan, 20.0)}, "gold_reward") == 1.0
    with pytest.raises(ValueError, match="no swept value has a finite validation 'gold_reward'"):
        choose({1.0: summary(math.nan, 1.0)}, "gold_reward")


def test_test_figures_are_taken_at_the_validation_choice_not_the_test_best():
    validation = {"tq": {1.0: summary(3.0, 4.0), 4.0: summary(2.0, 18.0)},
                  "bon": {8: summary(2.0, 1.2), 64: summary(2.5, 3.2)}}
    test = {"tq": {1.0: summary(2.3, 4.1), 4.0: summary(2.9, 19.0)},
            "bon": {8: summary(2.1, 1.2), 64: summary(2.4, 3.2)}}
    out = select(validation, test, "gold_reward")
    assert out["tq"] == dict(value=1.0, validation=3.0, test=test["tq"][1.0])      # test would have preferred 4
    assert out["bon"]["value"] == 64 and out["bon"]["test"]["gold_reward"] == 2.4


def test_stream_split_keeps_the_test_prefix_and_a_disjoint_distinct_validation_set():
    stream = ["a", "b", "c", "a", "d", "d", "e", "b", "f", "g", "h"]
    test, val = split_stream(lambda n: stream[:n], 3, 3)
    assert test == ["a", "b", "c"] and val == ["d", "e", "f"]
    ids = [[1, 2], [1, 3], [1, 2], [4]]
    assert split_stream(lambda n: ids[:n], 2, 1) == ([[1, 2], [1, 3]], [[4]])
    assert split_stream(lambda n: stream[:n], 4, 0) == (["a", "b", "c", "a"], [])


def test_stream_without_enough_distinct_prompts_is_an_error():
    with pytest.raises(ValueError, match="fewer than 3 distinct prompts outside the test set"):
        split_stream(lambda n: (["x", "y", "z"] * 1000)[:n], 2, 3)
    with pytest.raises(ValueError, match="need n_test >= 1 and n_val >= 0"):
        split_stream(lambda n: [], 0, 1)


def test_list_split_takes_validation_from_the_end():
    assert split_list(list("abcdef"), 2) == (list("abcd"), list("ef"))
    assert split_list(list("abc"), 0) == (list("abc"), [])
    with pytest.raises(ValueError, match=r"--val-prompts must lie in \[0, 2\] for 3 prompts, got 3"):
        split_list(list("abc"), 3)
