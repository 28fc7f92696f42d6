"""On-policy reward-model pairs: prompts kept apart from the evaluation, gold ordering, agreement."""

import jax
import numpy as np
import pytest

import tqjax
from tqjax import world
from tqjax.eval.metrics import rank_agreement, rm_scores
from tqjax.models import ModelConfig, init_model
from tqjax.train import TrainConfig, data, onpolicy, reward_model
from tqjax.train import world as recipe_lib


@pytest.fixture(scope="module")
def tokenizer():
    return world.world_tokenizer(n_texts=200)


@pytest.fixture(scope="module")
def lm(tokenizer):
    config = ModelConfig.tiny("llama", vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return init_model(config, jax.random.PRNGKey(0), tokenizer=tokenizer)


@pytest.fixture(scope="module")
def rm(lm):
    return reward_model.from_lm(lm, jax.random.PRNGKey(1))


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_training_prompts_leave_out_the_eval_prompts():
    held_out = set(world.sample_prompts(onpolicy.EXCLUDED_EVAL_PROMPTS, world.EVAL_PROMPT_SEED))
    assert any(p in held_out for p in world.sample_prompts(100, 3))   # the filter has work to do
    prompts = onpolicy.training_prompts(100, 3)
    assert len(prompts) == 100 and not held_out & set(prompts)
    assert prompts == onpolicy.training_prompts(100, 3)


def test_pairs_are_ordered_by_gold_and_skip_ties_and_duplicates(tokenizer):
    prompts = ["review of the corner cafe :", "review of the city inn :"]
    a, b, c = (ids(tokenizer, t) for t in ("the coffee was tasty .", "the coffee was bland .", "the tea was tasty ."))
    samples = {"x": [a, a], "y": [b, a], "z": [c, c]}
    gold = {"x": np.array([2.0, 1.0]), "y": np.array([-1.0, 1.0]), "z": np.array([2.0, 0.5])}
    out = onpolicy.pairs(tokenizer, prompts, samples, gold, 32)
    # prompt 0: a>b, c>b (a vs c tie skipped); prompt 1: y repeats x's response, so a>c only
    assert data.size(out) == 3
    chosen = [out["chosen_tokens_NT"][i, :out["chosen_lengths_N"][i]].tolist() for i in range(3)]
    rejected = [out["rejected_tokens_NT"][i, :out["rejected_lengths_N"][i]].tolist() for i in range(3)]
    p0, p1 = (list(tqjax.api.decode.prompt_ids(tokenizer, p)) for p in prompts)
    assert chosen == [p0 + a, p0 + c, p1 + a] and rejected == [p0 + b, p0 + b, p1 + c]


def test_rank_agreement_against_closed_forms():
    g = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    assert rank_agreement(g * 3 + 1, g) == {"spearman": pytest.approx(1.0), "pairwise_accuracy": 1.0, "pairs": 10}
    assert rank_agreement(-g, g)["spearman"] == pytest.approx(-1.0)
    assert rank_agreement(-g, g)["pairwise_accuracy"] == 0.0
    s = np.array([0.0, 2.0, 1.0, 3.0, 4.0])          # one swap: d² sum 2, 9 of 10 pairs right
    assert rank_agreement(s, g)["spearman"] == pytest.approx(1 - 6 * 2 / (5 * 24))
    assert rank_agreement(s, g)["pairwise_accuracy"] == pytest.approx(0.9)
    tied = rank_agreement(np.array([1.0, 1.0, 2.0]), np.array([0.0, 1.0, 1.0]))
    assert tied["pairs"] == 2 and tied["pairwise_accuracy"] == pytest.approx(0.75)   # one score tie: half
    assert np.isnan(rank_agreement(np.ones(3), g[:3])["spearman"])
    with pytest.raises(ValueError, match="two \\[P\\] arrays"):
        rank_agreement(np.ones(3), np.ones(4))


def test_agreement_scores_with_the_reward_model(tokenizer, rm):
    prompts = world.sample_prompts(5, seed=9)
    texts = ["the food was tasty .", "the food was bland .", "i would not come back .", "the staff was rude .",
             "the view was clean and quiet ."]
    samples = {"x": [ids(tokenizer, t) + [tokenizer.eos_token_id] for t in texts],
               "y": [ids(tokenizer, t) for t in texts[::-1]]}
    gold = onpolicy.gold_scores(tokenizer, prompts, samples)
    seqs = [list(tqjax.api.decode.prompt_ids(tokenizer, p)) + r for p, r in zip(prompts, samples["x"])]
    one_by_one = [float(tqjax.reward(rm, np.asarray([s]), np.asarray([len(s)]))[0]) for s in seqs]
    np.testing.assert_allclose(rm_scores(rm, tokenizer, prompts, samples["x"]), one_by_one, rtol=1e-5, atol=1e-5)
    out = onpolicy.agreement(rm, tokenizer, prompts, samples, gold)
    for name in samples:
        assert out[name] == rank_agreement(rm_scores(rm, tokenizer, prompts, samples[name]), gold[name])
    assert out["same prompt"]["pairs"] == data.size(onpolicy.pairs(tokenizer, prompts, samples, gold, 64))


def test_onpolicy_stage_fine_tunes_the_reward_model_and_reports(tokenizer, lm, rm):
    recipe = recipe_lib.WorldRecipe(pairs=32, val_pairs=16, onpolicy_prompts=4, onpolicy_check_prompts=3,
                                    onpolicy_max_new_tokens=4,
                                    reward_onpolicy=TrainConfig(steps=3, batch_size=8, warmup_steps=1))
    sources = (onpolicy.SOURCES[1], onpolicy.Source("args", (("alpha", 1.0), ("k", 3), ("method", "args"))))
    logs = []
    new, report = recipe_lib.train_reward_onpolicy(recipe, tokenizer, lm, lm, rm, progress=False,
                                                   log=logs.append, sources=sources)
    assert report["sources"] == ["sft T=1", "args"] and report["check_prompts"] == 3
    assert report["rounds"][0]["prompts"] == 4 and report["rounds"][0]["onpolicy_pairs"] > 0
    for when in ("before", "after"):
        assert set(report[when]) == {"sft T=1", "args", "all", "same prompt"}
    assert report["before"]["same prompt"]["pairs"] == report["after"]["same prompt"]["pairs"]
    assert not np.allclose(new.params["score_D"], rm.params["score_D"])
    assert {"accuracy", "hack_accuracy", "contrast_accuracy"} <= set(report["validation"])
    assert logs and "round 1" in logs[0]
