"""Optax training: each kind of run lowers its loss, resuming is exact, checkpoints round-trip."""

import os

import jax
import numpy as np
import pytest

import tqjax
from tqjax import world
from tqjax.cli.main import main as cli_main
from tqjax.models import ModelConfig, init_model
from tqjax.train import TrainConfig, batch_indices, data, dpo, reward_model, sft
from tqjax.train import world as recipe
from tqjax.train.loop import take

LENGTH = 32  # short examples only: fewer, smaller compiled shapes


def short(tokenizer, texts):
    return [len(tokenizer(t)["input_ids"]) <= LENGTH for t in texts]


@pytest.fixture(scope="module")
def tokenizer():
    return world.world_tokenizer(n_texts=200)


@pytest.fixture(scope="module")
def lm(tokenizer):
    config = ModelConfig.tiny("llama", vocab_size=len(tokenizer), bos_token_id=1)
    return init_model(config, jax.random.PRNGKey(0), tokenizer=tokenizer)


@pytest.fixture(scope="module")
def texts(tokenizer):
    texts = world.sample_texts(600, seed=1)
    texts = [t for t, ok in zip(texts, short(tokenizer, texts)) if ok][:192]
    return data.text_arrays(tokenizer, texts, LENGTH)


@pytest.fixture(scope="module")
def pairs(tokenizer):
    pairs = world.make_pairs(600, world.target_reward, seed=2)
    ok = zip(short(tokenizer, [f"{p.prompt} {p.chosen}" for p in pairs]),
             short(tokenizer, [f"{p.prompt} {p.rejected}" for p in pairs]))
    return data.pair_arrays(tokenizer, [p for p, (a, b) in zip(pairs, ok) if a and b][:128], LENGTH)


def config(steps, **kw):
    return TrainConfig(steps=steps, batch_size=16, learning_rate=3e-3, warmup_steps=2, **kw)


def test_response_mask_covers_exactly_the_response(tokenizer):
    prompts, responses = ["review of the corner cafe :"], ["the coffee was tasty . <eos>"]
    arrays = data.response_arrays(tokenizer, prompts, responses, 16)
    n_prompt = len(tokenizer(prompts[0])["input_ids"])
    n = int(arrays["lengths_N"][0])
    assert n == n_prompt + 6
    assert arrays["tokens_NT"][0, n - 1] == tokenizer.eos_token_id
    assert (arrays["tokens_NT"][0, n:] == tokenizer.pad_token_id).all()
    np.testing.assert_array_equal(arrays["mask_NT"][0], (np.arange(16) >= n_prompt) & (np.arange(16) < n))


def test_text_mask_skips_bos_and_padding(texts):
    n_T = np.arange(LENGTH)[None, :]
    expected = (n_T >= 1) & (n_T < texts["lengths_N"][:, None])
    np.testing.assert_array_equal(texts["mask_NT"], expected)


def test_too_long_example_is_refused(tokenizer):
    with pytest.raises(ValueError, match="more than the padded length 4"):
        data.text_arrays(tokenizer, ["review of the corner cafe : the coffee was tasty"], 4)


def test_batches_are_a_seeded_permutation_per_epoch():
    epoch = np.concatenate([batch_indices(s, 10, 5, seed=7) for s in range(2)])
    assert sorted(epoch.tolist()) == list(range(10))
    np.testing.assert_array_equal(batch_indices(3, 10, 4, seed=7), batch_indices(3, 10, 4, seed=7))
    assert not np.array_equal(batch_indices(0, 10, 10, seed=7), batch_indices(0, 10, 10, seed=8))


def test_take_cuts_right_padding_to_a_bucket(texts):
    batch = take(texts, np.arange(4), bucket=16)
    longest = int(texts["lengths_N"][:4].max())
    assert batch["tokens_NT"].shape[1] == -(-longest // 16) * 16 >= longest


def test_sft_lowers_its_loss(lm, texts):
    before = sft.validate(lm, texts)
    run = sft.train(lm, texts, config(30), progress=False)
    after = sft.validate(lm.replace(params=run.params), texts)
    assert run.losses.shape == (30,)
    assert run.losses[-5:].mean() < run.losses[0] - 1.0
    assert after["perplexity"] < before["perplexity"] / 3
    assert before["uniform_perplexity"] == len(lm.tokenizer)


def test_reward_model_lowers_its_loss(lm, pairs):
    rm = reward_model.from_lm(lm, jax.random.PRNGKey(1))
    assert rm.kind == "reward" and "head_DV" not in rm.params
    run = reward_model.train(rm, pairs, config(30, checkpoint_every=100), progress=False)
    assert run.losses[-5:].mean() < run.losses[:5].mean() - 0.1
    assert reward_model.validate(rm.replace(params=run.params), pairs)["accuracy"] > 0.7


def test_fit_head_is_a_linear_probe_without_bias_its_l2_shrinking_it():
    rng = np.random.default_rng(0)
    direction = rng.normal(size=8)
    h = rng.normal(size=(200, 8))
    labels = (h @ direction > 0).astype(np.int32)
    loose, tight = (np.asarray(reward_model.fit_head(h, labels, l2)) for l2 in (1e-4, 1.0))
    assert loose.shape == (8,) and np.mean((h @ loose > 0) == (labels == 1)) >= 0.98
    assert np.linalg.norm(tight) < 0.5 * np.linalg.norm(loose)
    assert np.corrcoef(loose, direction)[0, 1] > 0.95
    flipped = np.asarray(reward_model.fit_head(h, 1 - labels, 1e-4))
    np.testing.assert_allclose(flipped, -loose, rtol=1e-3, atol=1e-3)     # no bias to absorb a flip


def test_dpo_lowers_its_loss_and_opens_a_margin(lm, pairs):
    arrays = dpo.with_reference(lm, pairs)
    start = dpo.validate(lm, arrays, beta=0.5)
    assert start["loss"] == pytest.approx(np.log(2.0), abs=1e-5)  # the policy is the reference
    run = dpo.train(lm, arrays, 0.5, config(20), progress=False)
    end = dpo.validate(lm.replace(params=run.params), arrays, beta=0.5)
    assert run.losses[-5:].mean() < run.losses[0] - 0.05
    assert end["margin"] > 0.1 and end["accuracy"] > 0.6


def test_resume_after_interruption_equals_an_uninterrupted_run(lm, texts, tmp_path):
    cfg = config(8, checkpoint_every=2)
    whole = sft.train(lm, texts, cfg, progress=False)
    first = sft.train(lm, texts, cfg, str(tmp_path / "state"), stop_at=5, progress=False)
    assert first.step == 5
    rest = sft.train(lm, texts, cfg, str(tmp_path / "state"), progress=False)
    assert rest.resumed_from == 4 and rest.step == 8  # last checkpoint before the interruption
    jax.tree.map(np.testing.assert_array_equal, rest.params, whole.params)
    again = sft.train(lm, texts, cfg, str(tmp_path / "state"), progress=False)
    assert again.resumed_from == 8 and again.losses.size == 0
    jax.tree.map(np.testing.assert_array_equal, again.params, whole.params)


def test_checkpoint_round_trip_is_bit_exact(lm, texts, tmp_path):
    trained = lm.replace(params=sft.train(lm, texts, config(3), progress=False).params)
    rm = reward_model.from_lm(trained, jax.random.PRNGKey(2))
    for name, model in (("sft", trained), ("reward", rm)):
        tqjax.save(model, tmp_path / name)
        back = tqjax.load(str(tmp_path / name))
        assert back.config == model.config
        jax.tree.map(np.testing.assert_array_equal, back.params, model.params)
        assert back.tokenizer.get_vocab() == model.tokenizer.get_vocab()


def test_hack_pairs_are_ordered_by_the_gold_reward_and_seeded():
    pairs = recipe.hack_pairs(40, world.baseline_reward, seed=3)
    assert pairs == recipe.hack_pairs(40, world.baseline_reward, seed=3)
    for p in pairs:
        assert p.chosen != p.rejected and p.chosen.endswith("<eos>") and p.rejected.endswith("<eos>")
        assert world.baseline_reward(p.prompt, p.chosen) == p.chosen_reward > p.rejected_reward


def test_contrast_pairs_are_minimal_ordered_by_the_gold_reward_and_seeded():
    pairs = recipe.contrast_pairs(40, world.target_reward, seed=3)
    assert pairs == recipe.contrast_pairs(40, world.target_reward, seed=3)
    for p in pairs:
        assert p.chosen != p.rejected and p.chosen.endswith("<eos>") and p.rejected.endswith("<eos>")
        assert world.target_reward(p.prompt, p.chosen) == p.chosen_reward > p.rejected_reward
        a, b = p.chosen.split(), p.rejected.split()
        swapped = len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1
        toggled = [w for w in a if w != "not"] == [w for w in b if w != "not"]  # only "not"s differ
        assert swapped or toggled


def test_sample_responses_end_at_eos(lm):
    prompts = world.sample_prompts(3, seed=4)
    out = recipe.sample_responses(lm, lm.tokenizer, prompts, jax.random.PRNGKey(0), length=24)
    assert len(out) == 3
    for prompt, response in zip(prompts, out):
        ws = response.split()
        assert "<eos>" not in ws[:-1]
        assert len(lm.tokenizer(prompt)["input_ids"]) + len(ws) <= 24


def test_bad_inputs():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        TrainConfig(steps=0)
    rm_config = ModelConfig.tiny("llama", kind="reward")
    with pytest.raises(ValueError, match="SFT needs a language model"):
        sft.train(init_model(rm_config, jax.random.PRNGKey(0)), {}, TrainConfig(steps=1))
    with pytest.raises(ValueError, match="reference log-probs"):
        dpo.train(init_model(ModelConfig.tiny(), jax.random.PRNGKey(0)), {"chosen_tokens_NT": None}, 0.1,
                  TrainConfig(steps=1))


def test_cli_refuses_to_replace_models(tmp_path, capsys):
    os.makedirs(tmp_path / "world" / "sft")
    assert cli_main(["train", "world", "--out", str(tmp_path / "world")]) == 2
    assert "already holds sft; pass --overwrite" in capsys.readouterr().err
    assert cli_main(["train", "world", "--out", str(tmp_path / "x"), "--steps-scale", "0"]) == 2
    assert "--steps-scale must be > 0" in capsys.readouterr().err
    assert cli_main(["train", "world", "--out", str(tmp_path / "x"), "--onpolicy-rounds", "-1"]) == 2
    assert "--onpolicy-rounds must be >= 0" in capsys.readouterr().err


TINY_BPE = recipe.WorldRecipe(steps_scale=0.01, d_model=32, n_layers=1, n_heads=2, mlp_dim=64, pairs=24,
                              val_pairs=16, bpe_texts=40, bpe_merges=20)


def test_reward_bpe_is_built_alone_and_merged_into_the_report(tmp_path):
    import json

    out = tmp_path / "world"
    out.mkdir()
    other = {"seed": 0, "steps_scale": 0.01, "beta": 0.1, "sft": {"perplexity": 3.8},
             "seconds": {"sft": 1.0, "total": 9.0}, "params": {"sft": 5}}
    (out / "train_report.json").write_text(json.dumps(other))
    report = recipe.build(TINY_BPE, str(out), progress=False, log=lambda s: None, only=("reward-bpe",))
    rm = tqjax.load(out / "reward-bpe")
    assert rm.kind == "reward" and rm.tokenizer.backend_tokenizer.model.__class__.__name__ == "BPE"
    assert len(rm.tokenizer) == rm.config.vocab_size == 4 + 256 + 20
    saved = json.loads((out / "train_report.json").read_text())
    assert saved == report
    assert {k: saved[k] for k in ("sft", "beta")} == {k: other[k] for k in ("sft", "beta")}
    assert saved["seconds"]["sft"] == 1.0 and saved["seconds"]["total"] == 9.0 and saved["seconds"]["reward-bpe"] > 0
    entry = saved["reward-bpe"]
    assert entry["label"] == "target" and entry["tokenizer"]["vocab_size"] == 280
    assert {"accuracy", "hack_accuracy", "contrast_accuracy", "train_loss_last"} <= set(entry)
    assert saved["params"]["reward-bpe"] == sum(x.size for x in jax.tree.leaves(rm.params))
    # the stage's data and seeds are its own: the tokenizer is a pure function of the recipe
    assert TINY_BPE.bpe_tokenizer().backend_tokenizer.to_str() == rm.tokenizer.backend_tokenizer.to_str()


def test_building_alone_refuses_bad_requests(tmp_path, capsys):
    with pytest.raises(ValueError, match="only reward-bpe can be built alone .* got sft"):
        recipe.build(TINY_BPE, str(tmp_path), only=("sft",))
    (tmp_path / "train_report.json").write_text('{"seed": 1, "steps_scale": 0.01}')
    with pytest.raises(ValueError, match="is of seed 1, steps scale 0.01; building reward-bpe with seed 0"):
        recipe.build(TINY_BPE, str(tmp_path), only=("reward-bpe",))
    os.makedirs(tmp_path / "reward-bpe")
    assert cli_main(["train", "world", "--only", "reward-bpe", "--out", str(tmp_path)]) == 2
    assert "already holds reward-bpe; pass --overwrite" in capsys.readouterr().err
