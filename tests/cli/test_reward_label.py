"""--reward-label: a classifier reward model with several labels is loaded through one of them."""

import pytest

from tests import hf_models
from tqjax.cli.main import main
from tqjax.cli.options import _label, reward_labels


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("label")
    lm = hf_models.save(hf_models.build("llama"), root / "lm")
    rm = hf_models.save(hf_models.build_classifier("llama", ["NEGATIVE", "NEUTRAL", "POSITIVE"]), root / "rm")
    return lm, rm


def test_label_flag_parses_names_and_indices():
    assert (_label("POSITIVE"), _label("2")) == ("POSITIVE", 2)


def plan(lm, rm, *extra):
    return main(["plan", "--sft", lm, "--baseline", lm, "--reward", rm, "--method", "tq", "--k", "2",
                 "--horizon", "1", "--memory-budget", "1GB", *extra])


def test_plan_needs_the_label_of_a_classifier(folders, capsys):
    lm, rm = folders
    assert plan(lm, rm) == 2
    err = capsys.readouterr().err
    assert "3 labels (0='NEGATIVE', 1='NEUTRAL', 2='POSITIVE')" in err and "--reward-label" in err
    assert plan(lm, rm, "--reward-label", "POSITIVE") == 0
    assert plan(lm, rm, "--reward-label", "CHEERFUL") == 2
    assert "reward_label='CHEERFUL' is not a label" in capsys.readouterr().err


def test_reward_labels_of_the_flags():
    class Args:
        reward_label, baseline_reward_label = "POSITIVE", None
    assert reward_labels(Args()) == {"reward": "POSITIVE"}
