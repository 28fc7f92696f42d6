"""`tqjax sentiment train` end to end on a tiny cache: a CSV of each corpus in the real format and a
tiny random llama in place of SmolLM2, with a recipe scaled down to run in seconds."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tqjax
from tqjax.cli.main import main as cli
from tqjax.models import ModelConfig, init_model
from tqjax.models.transformer import embed
from tqjax.models.model import causal_blocks
from tqjax.sentiment import SentimentPaths, read_splits
from tqjax.sentiment.judge import Judge, example_texts
from tqjax.sentiment.train import CacheNotReadyError, CheckpointPaths, TrainRecipe, train
from tqjax.train import top
from tqjax.train.loop import TrainConfig
from tqjax.world.tokenizer import train_tokenizer

GOOD = ("great", "superb", "wonderful", "moving", "brilliant")
BAD = ("awful", "dull", "boring", "terrible", "clumsy")
FILLER = ("the", "film", "plot", "actors", "story", "is", "a", "and", "it", "movie", "here")

RECIPE = TrainRecipe(
    reward_layers=2, reward_top=2, reward=TrainConfig(steps=60, batch_size=8, learning_rate=1e-2, warmup_steps=5,
                                                      weight_decay=0.0, checkpoint_every=20),
    reward_evals=2, review_tokens=12, judge_bits=10, judge_steps=100, dpo_prefixes=8, dpo_new_tokens=4,
    dpo_top=1, dpo=TrainConfig(steps=8, batch_size=4, learning_rate=3e-3, warmup_steps=1, weight_decay=0.0,
                               checkpoint_every=4), eval_prefixes=4, decode_batch=16)


def _sentence(rng, words):
    return " ".join(list(rng.choice(FILLER, 4)) + [rng.choice(words), "."])


def _csv(path, rows):
    body = "\r\n".join(f'"{label}","{text}"' for label, text in rows)
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        f.write(body)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    paths = SentimentPaths(str(root))
    os.makedirs(os.path.dirname(paths.sentences_csv))
    rng = np.random.default_rng(0)
    sentences = [(lab, _sentence(rng, GOOD if lab == "1" else BAD)) for lab in ("1", "-1") for _ in range(40)]
    reviews = [(lab, " \n".join(_sentence(rng, GOOD if lab == "1" else BAD) for _ in range(3)))
               for lab in ("1", "-1") for _ in range(20)]
    _csv(paths.sentences_csv, sentences)
    _csv(paths.reviews_csv, reviews)
    tokenizer = train_tokenizer([t for _, t in sentences + reviews] + ["The Film"])
    config = ModelConfig.tiny(vocab_size=len(tokenizer), n_layers=4, tie_embeddings=True, bos_token_id=1)
    tqjax.save(init_model(config, jax.random.PRNGKey(0), tokenizer=tokenizer), paths.checkpoint)
    return str(root)


@pytest.fixture(scope="module")
def trained(cache):
    logs = []
    record = train(cache, recipe=RECIPE, progress=False, log=logs.append)
    return record, logs


def test_top_blocks_from_features_equal_the_full_forward():
    model = init_model(ModelConfig.tiny(n_layers=4), jax.random.PRNGKey(1))
    tokens_BT = jax.random.randint(jax.random.PRNGKey(2), (3, 9), 3, 61)
    lengths_N = np.asarray([9, 5, 7], np.int32)
    x_NTD = top.features(model, np.asarray(tokens_BT), lengths_N, first=3, batch_size=2, bucket=4, progress=False)
    h_BTD = top.hidden(model.config, top.top(model.params, 3), jnp.asarray(x_NTD), 3)
    full_BTD = model.hidden_states(tokens_BT)
    for b, n in enumerate(lengths_N):     # rows shorter than T: their real positions only
        np.testing.assert_allclose(h_BTD[b, :n], full_BTD[b, :n], rtol=1e-5, atol=1e-5)
    x0 = embed(model.config, model.params, tokens_BT, jnp.broadcast_to(jnp.arange(9), (3, 9)))
    np.testing.assert_array_equal(causal_blocks(model.config, model.params["layers"], x0, 0),
                                  causal_blocks(model.config, top.top(model.params, 2)["layers"],
                                                causal_blocks(model.config, jax.tree.map(lambda a: a[:2], model.params["layers"]), x0), 2))
    last = top.last_hidden(model.config, top.top(model.params, 3), {"x_NTD": x_NTD, "lengths_N": lengths_N}, 3,
                           batch_size=2)
    np.testing.assert_allclose(last, np.stack([full_BTD[b, n - 1] for b, n in enumerate(lengths_N)]), rtol=1e-5,
                               atol=1e-5)
    merged = top.merge(model.params, top.top(model.params, 3), 3)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), merged, model.params))


def test_reward_model_separates_the_tiny_set_where_decoding_reads_it(cache, trained):
    record, logs = trained
    probe = record["reward"]["probe_val_accuracy_by_l2"]      # the head started from a linear probe
    assert set(probe) == {str(l2) for l2 in RECIPE.reward_probe_l2} and max(probe.values()) >= 0.75
    assert sum("r: probe L2" in line for line in logs) == len(RECIPE.reward_probe_l2)
    assert record["reward"]["val_accuracy"] >= 0.75
    assert record["reward"]["test_sentences_accuracy"] >= 0.75
    rm = tqjax.load(CheckpointPaths(cache).reward)
    assert rm.kind == "reward" and rm.config.n_layers == RECIPE.reward_layers
    test = read_splits(SentimentPaths(cache).sentences_csv).test
    texts = example_texts(test)
    ids = [rm.tokenizer.encode(t) for t in texts]
    T = max(map(len, ids))
    tokens = np.asarray([i + [0] * (T - len(i)) for i in ids], np.int32)
    scores = np.asarray(tqjax.reward(rm, tokens, np.asarray([len(i) for i in ids])))
    labels = np.asarray([e.label for e in test])
    assert np.mean((scores > 0) == (labels == 1)) == record["reward"]["test_sentences_accuracy"]


def test_judge_round_trip_and_accuracy(cache, trained):
    record, _ = trained
    assert record["judge"]["test_reviews_accuracy"] >= 0.75
    judge = Judge.load(CheckpointPaths(cache).judge)
    texts = ["A great, wonderful film.", "An awful and boring movie."]
    p = judge.positive_prob(texts)
    assert p.dtype == np.float64 and p.shape == (2,) and p[0] > 0.5 > p[1]
    judge.save(os.path.join(cache, "copy"))
    np.testing.assert_array_equal(Judge.load(os.path.join(cache, "copy")).positive_prob(texts), p)
    with pytest.raises(FileNotFoundError, match="judge.npz is missing"):
        Judge.load(os.path.join(cache, "nowhere"))


def test_dpo_raises_the_chosen_margin_and_saves_a_policy(cache, trained):
    record, _ = trained
    dpo = record["dpo"]
    assert dpo["pairs"] >= 4
    assert dpo["train_margin"] > 0 and dpo["train_pair_accuracy"] > 0.5   # the margin starts at 0 exactly
    assert dpo["kl_dpo"] > 0 and np.isfinite(dpo["r_dpo"])
    policy = tqjax.load(CheckpointPaths(cache).baseline)
    sft = tqjax.load(SentimentPaths(cache).checkpoint)
    same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), policy.params["layers"], sft.params["layers"])
    assert not all(jax.tree.leaves(same))
    np.testing.assert_array_equal(policy.params["embed_VD"], sft.params["embed_VD"])   # frozen, tied


def test_finished_stages_are_skipped(cache, trained):
    record, _ = trained
    with open(CheckpointPaths(cache).record) as f:
        assert set(json.load(f)) == {"reward", "judge", "dpo"}
    logs = []
    again = train(cache, recipe=RECIPE, progress=False, log=logs.append)
    assert again == record and sum("skipped" in line for line in logs) == 3


def test_missing_cache_is_a_named_error(tmp_path, capsys):
    with pytest.raises(CacheNotReadyError, match="tqjax sentiment setup"):
        train(str(tmp_path), recipe=RECIPE, progress=False)
    assert cli(["sentiment", "train", "--cache", str(tmp_path)]) == 2
    assert "not set up" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown stage"):
        train(str(tmp_path), stages=("rm",))
