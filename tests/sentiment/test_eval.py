"""`tqjax sentiment eval` end to end on tiny random stand-ins (models, reward model, judge) laid out as
the real cache is, the perplexity metric against a hand computation, resuming, and missing inputs."""

import json
import os
import sys
import types

import jax
import numpy as np
import pytest

import tqjax
from tests.sentiment.test_data import write_csv
from tqjax.cli.main import main
from tqjax.models import ModelConfig, init_model
from tqjax.sentiment import read_splits, review_prompts
from tqjax.sentiment.evaluate import SAMPLE_PROMPTS, EvalInputs, MissingInputError

WORDS = "good bad film plot actor scene great boring story fun dull music the a was and it".split()
TINY = ["--k", "2", "--horizon", "2", "--max-new-tokens", "4", "--batch-size", "2", "--coherence-model", "sft"]


class StandInJudge:
    """The judge's interface (`tqjax.sentiment.judge.Judge`): ``positive_prob(texts) -> float64 [P]``."""

    calls = 0

    @classmethod
    def load(cls, path):
        assert os.path.isdir(path)
        return cls()

    def positive_prob(self, texts):
        StandInJudge.calls += 1
        return np.array([(sum(map(ord, t)) % 97) / 96 for t in texts], np.float64)


@pytest.fixture
def judge_module(monkeypatch):
    module = types.ModuleType("tqjax.sentiment.judge")
    module.Judge = StandInJudge
    monkeypatch.setitem(sys.modules, "tqjax.sentiment.judge", module)


def _reviews(n_per_label=10):
    rng = np.random.default_rng(0)
    return [(label, " ".join(rng.choice(WORDS, 14)) + " .") for label in ("1", "-1") for _ in range(n_per_label)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A cache as setup and training leave it, with tiny random models sharing one byte-level BPE tokenizer."""
    from tqjax.world import train_bpe_tokenizer

    root = tmp_path_factory.mktemp("cache")
    reviews = _reviews()
    tokenizer = train_bpe_tokenizer([t for _, t in reviews] + list(SAMPLE_PROMPTS), merges=60)
    inputs = EvalInputs(str(root))
    for i, (path, kind) in enumerate(((inputs.sft, "lm"), (inputs.checkpoint("baseline"), "lm"),
                                      (inputs.checkpoint("reward"), "reward"))):
        cfg = ModelConfig.tiny("llama", kind=kind, vocab_size=len(tokenizer), max_positions=128,
                               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        tqjax.save(init_model(cfg, jax.random.key(i), tokenizer=tokenizer), path)
    os.makedirs(inputs.checkpoint("judge"))
    os.makedirs(os.path.dirname(inputs.reviews_csv))
    write_csv(__import__("pathlib").Path(inputs.reviews_csv), reviews)
    return root


def test_end_to_end_on_two_prompts_then_resume(cache, tmp_path, judge_module, monkeypatch, capsys):
    out = tmp_path / "sentiment"
    args = ["sentiment", "eval", "--cache", str(cache), "--out", str(out), "--n-prompts", "2", "--val-prompts", "2",
            "--alphas", "1,2", *TINY]
    assert main(args) == 0
    report = json.load(open(out / "eval.json"))
    assert list(report["methods"]) == ["sft", "baseline", "bon", "args", "cd", "tq", "tq-indirect"]
    tq = report["methods"]["tq"]
    for key in ("gold_reward", "judge_positive", "reward", "kl", "perplexity", "diversity", "coherence", "length"):
        lo, hi = tq["ci"][key]
        assert lo <= tq[key] <= hi, key
    assert 0 <= tq["gold_reward"] <= 1 and tq["perplexity"] > 1 and tq["seconds"] > 0
    assert set(report["selected"]) == {"args", "cd", "tq"} and report["selected"]["tq"]["value"] in (1.0, 2.0)
    assert report["coherence"]["kind"] == "stand-in" and report["matched_compute"]["bon_n"] >= 1
    assert report["config"]["method"] == "tq" and report["config"]["transfer"] == "direct"
    pairs = {(p["a"], p["b"]) for p in report["paired"]}
    assert {("tq", b) for b in ("sft", "baseline", "bon", "args", "cd")} <= pairs
    assert ("tq-indirect", "sft") in pairs and all(p["metric"] == "judge" for p in report["paired"])
    md = (out / "eval.md").read_text()
    assert "judge P(positive)" in md and "PPL under SFT" in md and "gold" not in md
    assert "| tq @ α=" in md and "coherence (SFT stand-in)" in md
    assert (out / "frontier.png").stat().st_size > 0
    samples = (out / "samples.md").read_text()
    assert all(p in samples for p in SAMPLE_PROMPTS) and samples.count("| tq-indirect |") == 6
    # the corpus stays out of every report: no prompt text, and runs/ is ignored by git
    prompts = review_prompts(read_splits(str(cache / "sentiment" / "data" / "reviews.csv")).test, 2)
    for name in ("eval.json", "eval.md", "samples.md"):
        assert not any(p in (out / name).read_text() for p in prompts), name
    assert (out / "runs" / ".gitignore").read_text().endswith("*\n")
    assert sorted(os.listdir(out / "runs")) == sorted([".gitignore"] + [f"{m}.json" for m in report["methods"]])

    # a rerun decodes nothing: every method is read back from runs/
    def no_decoding(*a, **k):
        raise AssertionError("a finished method was decoded again")

    monkeypatch.setattr("tqjax.eval.harness.run", no_decoding)
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("finished in an earlier run") == 7
    assert json.load(open(out / "eval.json"))["methods"]["tq"]["gold_reward"] == tq["gold_reward"]


def test_resume_decodes_only_unfinished_or_changed_methods(cache, tmp_path, judge_module, monkeypatch, capsys):
    import tqjax.eval.harness as harness

    out = tmp_path / "e"
    args = ["sentiment", "eval", "--cache", str(cache), "--out", str(out), "--n-prompts", "2", "--val-prompts", "0",
            "--alphas", "", "--methods", "sft,args", *TINY]
    assert main(args) == 0
    decoded, real_run = [], harness.run

    def counting(method, *a, **k):
        decoded.append(method.name)
        return real_run(method, *a, **k)

    monkeypatch.setattr(harness, "run", counting)
    os.remove(out / "runs" / "args.json")
    assert main(args) == 0
    assert decoded == ["args"]
    decoded.clear()
    assert main(args[:-len(TINY)] + TINY + ["--max-new-tokens", "3"]) == 0      # another config: both again
    assert decoded == ["sft", "args"]
    assert main(args + ["--overwrite"]) == 0
    assert decoded == ["sft", "args", "sft", "args"]


def test_missing_inputs_name_the_folder_and_the_command(cache, tmp_path, capsys):
    empty = EvalInputs(str(tmp_path / "nothing"))
    with pytest.raises(MissingInputError, match=r"smollm2-135m-instruct \(the SFT model .*\) does not exist: run "
                                                 r"`tqjax sentiment setup --cache "):
        empty.check()
    partial = tmp_path / "partial"
    os.makedirs(partial / "sentiment")
    os.symlink(cache / "sentiment" / "model", partial / "sentiment" / "model")
    os.symlink(cache / "sentiment" / "data", partial / "sentiment" / "data")
    with pytest.raises(MissingInputError) as e:
        EvalInputs(str(partial)).check()
    assert isinstance(e.value, FileNotFoundError)
    assert str(e.value) == (f"{partial}/sentiment/checkpoints/reward (the reward checkpoint) does not exist: run "
                            f"`tqjax sentiment train --cache {partial}` first")
    assert main(["sentiment", "eval", "--cache", str(partial), "--out", str(tmp_path / "o")]) == 2
    assert "checkpoints/reward (the reward checkpoint) does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_perplexity_against_a_hand_computation(cache):
    from tqjax.api.decode import prompt_ids
    from tqjax.eval.metrics import perplexity

    assert perplexity([2 * np.log(0.5), 0.0], [2, 0])[0] == pytest.approx(2.0)
    assert np.isnan(perplexity([0.0], [0])[0])
    sft = tqjax.load(EvalInputs(str(cache)).sft)
    prompts = list(SAMPLE_PROMPTS[:2])
    out = tqjax.decode(tqjax.TQParams(sft=sft), prompts,
                       tqjax.DecodeConfig(method="sft", temperature=1.0, max_new_tokens=5, seed=3))
    want = []
    for i, (prompt, response) in enumerate(zip(prompts, out.tokens)):
        ids = list(prompt_ids(sft.tokenizer, prompt, i)) + list(response)
        logits = np.asarray(tqjax.logits(sft, np.asarray([ids], np.int32))[0], np.float64)
        logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
            - logits.max(-1, keepdims=True)
        start = len(ids) - len(response)
        total = sum(logp[t - 1, ids[t]] for t in range(start, len(ids)))
        want.append(np.exp(-total / len(response)))
    np.testing.assert_allclose(perplexity(out.logp_sft, [len(t) for t in out.tokens]), want, rtol=1e-4)


def test_indirect_transfer_takes_the_baselines_dpo_beta(tmp_path):
    inputs = EvalInputs(str(tmp_path))
    assert inputs.dpo_beta() is None                    # no train.json: DecodeConfig's own β
    os.makedirs(inputs.checkpoint(""))
    with open(os.path.join(inputs.checkpoint(""), "train.json"), "w") as f:
        json.dump({"reward": {}}, f)
    assert inputs.dpo_beta() is None                    # no DPO stage recorded
    with open(os.path.join(inputs.checkpoint(""), "train.json"), "w") as f:
        json.dump({"dpo": {"beta": 0.1}}, f)
    assert inputs.dpo_beta() == 0.1
