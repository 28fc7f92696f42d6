"""`tqjax decode` and `tqjax eval` end to end, and their bad-input errors."""

import json
import os
import re
import subprocess
import sys

import pytest

from tqjax.cli.main import main
from tqjax.cli.options import SHIPPED

FAST = ["--k", "3", "--horizon", "2", "--max-new-tokens", "5"]


def write_prompts(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def models(world_dir):
    return ["--sft", str(world_dir / "sft"), "--baseline", str(world_dir / "baseline-direct"),
            "--reward", str(world_dir / "reward")]


def test_decode_job_writes_one_line_per_prompt(world_dir, tmp_path):
    prompts = write_prompts(tmp_path / "p.jsonl", ['{"id": "a", "prompt": "review of the sushi bar :"}',
                                                   '{"id": 7, "prompt_ids": [1, 40, 41, 42]}'])
    out = tmp_path / "new" / "out.jsonl"         # the missing folder is created
    assert main(["decode", *models(world_dir), "--prompts", prompts, "--out", str(out), *FAST]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["a", 7]
    for line in lines:
        assert set(line) == {"id", "tokens", "text", "reward", "kl", "logp_sft", "log_ratio"}
        assert 1 <= len(line["tokens"]) <= 5 and isinstance(line["reward"], float) and line["kl"] >= 0
    assert not os.path.exists(str(out) + ".partial")


def test_decode_demo_prints_both_responses(world_dir, capsys):
    assert main(["decode", "--checkpoints", str(world_dir), *FAST]) == 0
    text = capsys.readouterr().out
    assert text.count("\nprompt: ") == 6
    assert text.count("TQ*  [gold r") == 6 and text.count("SFT  [gold r") == 6


def test_decode_on_the_shipped_checkpoints(capsys):
    assert SHIPPED.is_dir(), "tqjax/checkpoints/world is part of the package"
    assert main(["decode", *FAST]) == 0
    assert "mean over 6 prompts  TQ*" in capsys.readouterr().out


def test_eval_writes_json_table_and_plot(world_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoints", str(world_dir), "--n-prompts", "2", "--alphas", "1,4", "--bon-ns", "2,4",
                 "--methods", "sft,bon,args,tq,tq-indirect", "--coherence-model", "sft", "--out", str(out), *FAST]) == 0
    report = json.load(open(out / "eval.json"))
    assert set(report["methods"]) == {"sft", "bon", "args", "tq", "tq-indirect"}
    for row in report["methods"].values():
        assert {"gold_reward", "reward", "kl", "diversity", "coherence", "win_rate_vs_sft", "tokens_per_s"} <= set(row)
        for key in ("gold_reward", "kl", "win_rate_vs_sft", "coherence"):
            assert row["ci"][key][0] <= row[key] <= row["ci"][key][1]
    assert report["methods"]["sft"]["win_rate_vs_sft"] == 0.5
    # k=3, M=1, H=2: 3 commits + k·M·H rollout proposals + k·M·(H+1) reward positions, per sample 2
    assert report["matched_compute"]["bon_n"] == round((3 + 3 * 1 * 2 + 3 * 1 * 3) / 2)
    assert (report["prompts"], report["validation_prompts"]) == (2, 2)
    assert sorted(p["value"] for p in report["frontier"]["tq"]) == [1.0, 4.0]
    assert [p["value"] for p in report["frontier"]["bon"]] == [2, 4]
    for name, param, values in (("tq", "alpha", (1.0, 4.0)), ("args", "alpha", (1.0, 4.0)), ("bon", "N", (2, 4))):
        pick = report["selected"][name]
        assert pick["param"] == param and pick["value"] in values
        val = {v["value"]: v["gold_reward"] for v in report["validation"][name]}
        assert pick["validation"] == max(val.values())
        test_point = next(p for p in report["frontier"][name] if p["value"] == pick["value"])
        assert pick["test"]["gold_reward"] == test_point["gold_reward"]
    assert {(t["a"], t["b"]) for t in report["paired"]} >= {("tq", "sft"), ("tq", "bon"), ("tq", "tq-indirect")}
    assert report["coherence"]["kind"] == "stand-in"
    assert (out / "frontier.png").stat().st_size > 1000
    md = (out / "eval.md").read_text()
    assert "| tq-indirect |" in md and "coherence (SFT stand-in)" in md and "(val) |" in md
    assert "TQ* against each method on gold r" in md
    assert set(report["rm_agreement"]) == set(report["methods"])
    for a in [*report["rm_agreement"].values(), *(p["rm_agreement"] for p in report["frontier"]["tq"])]:
        assert a["pairs"] <= 1 and (a["pairs"] == 0) == (a["pairwise_accuracy"] != a["pairwise_accuracy"])
    assert "The learned reward model against gold r on each method's outputs" in md


def test_eval_coherence_from_a_sentence_encoder(world_dir, tmp_path):
    from tests import bert_models

    encoder = bert_models.save(bert_models.build(seed=0), tmp_path / "encoder", pooling="cls")
    out = tmp_path / "e"
    assert main(["eval", "--checkpoints", str(world_dir), "--n-prompts", "2", "--methods", "sft,tq",
                 "--coherence-model", encoder, "--out", str(out), *FAST]) == 0
    report = json.load(open(out / "eval.json"))
    assert report["coherence"]["kind"] == "sentence encoder" and report["coherence"]["pooling"] == "cls"
    assert report["validation_prompts"] == 0 and report["selected"] == {}
    assert all(-1 <= row["coherence"] <= 1 for row in report["methods"].values())
    assert "stand-in" not in (out / "eval.md").read_text()


def test_no_warmup_decodes_each_method_once(world_dir, tmp_path, monkeypatch, capsys):
    import tqjax.eval.compare as compare

    calls, real = [], compare.decode
    monkeypatch.setattr(compare, "decode", lambda params, prompts, config, **kw: calls.append(len(prompts)) or
                        real(params, prompts, config, **kw))
    args = ["eval", "--checkpoints", str(world_dir), "--n-prompts", "3", "--methods", "sft,tq", "--batch-size", "2",
            "--coherence-model", "sft", *FAST]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert calls == [2, 3, 2, 3]                # each method's first batch, then the test prompts
    assert "excludes compiling" in (tmp_path / "a" / "eval.md").read_text()
    calls.clear()
    assert main([*args, "--no-warmup", "--out", str(tmp_path / "b")]) == 0
    assert calls == [3, 3]
    assert "includes compiling (--no-warmup)" in (tmp_path / "b" / "eval.md").read_text()
    rows = [json.load(open(tmp_path / d / "eval.json"))["methods"]["tq"] for d in "ab"]
    assert rows[0]["gold_reward"] == rows[1]["gold_reward"] and rows[0]["kl"] == rows[1]["kl"]


def test_tq_beats_greedy_sft_on_the_shipped_checkpoints(tmp_path):
    """The shipped task's point: TQ* at its defaults (k=10, α=1, H=20, 48 new tokens) scores a
    higher gold reward (`tqjax.world.target_reward`) than greedy SFT on the first 16 held-out
    prompts. Measured with the shipped models of the 2026-12-03 rebuild: +2.253 against +1.578,
    14 of 16 prompts better (paired mean difference +0.68, 95 % bootstrap interval [−0.23, +1.23]:
    two prompts lose by a lot); the models shipped before scored +3.050 against +1.559. The test
    asks for +0.25 and a majority of prompts.

    Its time is running the programs, not compiling them, so the command runs in a child process at
    XLA's default optimisation level instead of the suite's -O0 (tests/conftest.py), and with
    ``--no-warmup`` (the tokens/s column is not checked, and the warm-up would decode all 16
    prompts twice): 133 s -> 69 s alone on the 2-core machine (2026-12-06)."""
    from tests.conftest import CALLER_XLA_FLAGS

    env = dict(os.environ, XLA_FLAGS=CALLER_XLA_FLAGS, JAX_PLATFORMS="cpu")
    args = ["eval", "--n-prompts", "16", "--methods", "sft,tq", "--no-warmup", "--out", str(tmp_path / "e")]
    proc = subprocess.run([sys.executable, "-m", "tqjax.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = json.load(open(tmp_path / "e" / "eval.json"))["methods"]
    assert set(rows) == {"sft", "tq"} and rows["sft"]["kl"] == 0.0 and rows["tq"]["kl"] > 0.0
    assert rows["tq"]["gold_reward"] > rows["sft"]["gold_reward"] + 0.25, rows
    assert rows["tq"]["win_rate_vs_sft"] > 0.5, rows


@pytest.mark.parametrize("lines, message", [
    (['{"id": 1, "prompt": "a"}', '{"id": 2, "prompt": '], "p.jsonl:2: not valid JSON"),
    (['{"id": 1, "prompt": "a"}', '{"id": 2}'], "p.jsonl:2: needs a non-empty \"prompt\""),
    (['{"id": 1, "prompt": "a"}', '{"id": 1, "prompt": "b"}'], "p.jsonl:2: duplicate id 1 \\(first on line 1\\)"),
    (['{"prompt": "a"}'], "p.jsonl:1: missing \"id\""),
])
def test_bad_prompt_files(world_dir, tmp_path, capsys, lines, message):
    prompts = write_prompts(tmp_path / "p.jsonl", lines)
    out = tmp_path / "out.jsonl"
    assert main(["decode", *models(world_dir), "--prompts", prompts, "--out", str(out)]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists() and not os.path.exists(str(out) + ".partial")


def test_missing_checkpoint_folder(world_dir, tmp_path, capsys):
    prompts = write_prompts(tmp_path / "p.jsonl", ['{"id": 1, "prompt": "a"}'])
    args = ["decode", "--method", "sft", "--sft", str(tmp_path / "nope"), "--prompts", prompts,
            "--out", str(tmp_path / "o.jsonl")]
    assert main(args) == 2
    assert "--sft folder" in capsys.readouterr().err and not (tmp_path / "o.jsonl").exists()


def test_wrong_checkpoint_folder(world_dir, tmp_path, capsys):
    prompts = write_prompts(tmp_path / "p.jsonl", ['{"id": 1, "prompt": "a"}'])
    (tmp_path / "empty").mkdir()
    assert main(["decode", "--method", "sft", "--sft", str(tmp_path / "empty"), "--prompts", prompts,
                 "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_existing_output_needs_overwrite(world_dir, tmp_path, capsys):
    prompts = write_prompts(tmp_path / "p.jsonl", ['{"id": 1, "prompt": "a"}'])
    out = tmp_path / "out.jsonl"
    out.write_text("keep me\n")
    assert main(["decode", *models(world_dir), "--prompts", prompts, "--out", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "keep me\n"


def test_unknown_method_and_flag_values(world_dir, tmp_path, capsys):
    assert main(["decode", "--checkpoints", str(world_dir), "--method", "beam"]) == 2
    assert "unknown method 'beam'" in capsys.readouterr().err
    assert main(["decode", "--checkpoints", str(world_dir), "--k", "0"]) == 2
    assert "k must be >= 1" in capsys.readouterr().err
    assert main(["eval", "--checkpoints", str(world_dir), "--methods", "sft,magic", "--out", str(tmp_path / "e")]) == 2
    assert "unknown method(s) ['magic']" in capsys.readouterr().err
    assert main(["decode", "--k", "ten"]) == 2
    assert "--k must be an int, got 'ten'" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--bon-ns", "0,4"], "--bon-ns must be finite numbers >= 1"),
    (["--alphas", "1,x"], "--alphas must be comma-separated numbers"),
    (["--val-prompts", "-1"], "--val-prompts must be >= 0"),
    (["--coherence-model", "sft", "--coherence-pooling", "cls"], "--coherence-pooling needs --coherence-model DIR"),
])
def test_bad_eval_flags(world_dir, tmp_path, capsys, flags, message):
    assert main(["eval", "--checkpoints", str(world_dir), "--out", str(tmp_path / "e"), *flags, *FAST]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "e" / "eval.json").exists()


def test_eval_refuses_to_overwrite(world_dir, tmp_path, capsys):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "eval.json").write_text("{}")
    assert main(["eval", "--checkpoints", str(world_dir), "--out", str(tmp_path / "e")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_decode_job_on_a_mesh_equals_one_device(world_dir, tmp_path):
    prompts = write_prompts(tmp_path / "p.jsonl", [f'{{"id": {i}, "prompt_ids": [1, {40 + i}, 41]}}' for i in range(3)])
    outs = []
    for name, extra in (("one", []), ("mesh", ["--mesh", "4,2"])):
        out = tmp_path / f"{name}.jsonl"
        assert main(["decode", *models(world_dir), "--prompts", prompts, "--out", str(out), *FAST, *extra]) == 0
        outs.append([json.loads(line)["tokens"] for line in out.read_text().splitlines()])
    assert outs[0] == outs[1]


def test_bad_mesh_flag(world_dir, tmp_path, capsys):
    prompts = write_prompts(tmp_path / "p.jsonl", ['{"id": 1, "prompt": "a"}'])
    args = ["decode", *models(world_dir), "--prompts", prompts, "--out", str(tmp_path / "o.jsonl")]
    assert main(args + ["--mesh", "3,3"]) == 2
    assert "mesh (3, 3) needs 9 devices" in capsys.readouterr().err
    assert main(args + ["--mesh", "8"]) == 2
    assert "--mesh must be DATA,MODEL" in capsys.readouterr().err


@pytest.fixture(scope="module")
def bpe_reward(tmp_path_factory):
    """A tiny random reward model that reads text with its own byte-level BPE tokenizer."""
    import jax

    import tqjax
    from tqjax.models import ModelConfig, init_model
    from tqjax.world import sample_texts, train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(sample_texts(100, seed=3), merges=40)
    cfg = ModelConfig.tiny("llama", kind="reward", vocab_size=len(tokenizer), max_positions=256)
    path = tmp_path_factory.mktemp("bpe") / "reward-bpe"
    tqjax.save(init_model(cfg, jax.random.key(7), tokenizer=tokenizer), path)
    return path


def test_eval_with_a_reward_model_of_its_own_tokenizer(world_dir, bpe_reward, tmp_path):
    import numpy as np

    import tqjax
    from tqjax.eval.metrics import reader_ids, rm_scores

    out = tmp_path / "eval"
    assert main(["eval", "--checkpoints", str(world_dir), "--reward", str(bpe_reward), "--n-prompts", "2",
                 "--val-prompts", "0", "--methods", "tq", "--coherence-model", "sft", "--batch-size", "2",
                 "--out", str(out), *FAST]) == 0
    report = json.load(open(out / "eval.json"))
    assert report["reward_model"] == os.path.abspath(bpe_reward)
    assert set(report["methods"]) == {"tq"} and set(report["rm_agreement"]) == {"tq"}
    # the agreement column reads the reward model as decode does: its own ids of the text
    sft, rm = tqjax.load(world_dir / "sft"), tqjax.load(bpe_reward)
    prompts, responses = ["restaurant review : the curry house ."], [sft.tokenizer.encode("the food was good .",
                                                                                          add_special_tokens=False)]
    ids = reader_ids(rm, sft.tokenizer, prompts, responses)
    assert ids == [rm.tokenizer("restaurant review : the curry house . the food was good .")["input_ids"]]
    want = tqjax.reward(rm, np.asarray(ids, np.int32), np.asarray([len(ids[0])], np.int32))
    np.testing.assert_allclose(rm_scores(rm, sft.tokenizer, prompts, responses), np.asarray(want), rtol=1e-5)


def test_eval_reward_flag_errors(world_dir, tmp_path, capsys):
    args = ["eval", "--checkpoints", str(world_dir), "--n-prompts", "1", "--methods", "sft", "--out",
            str(tmp_path / "e"), *FAST]
    assert main(args + ["--reward", str(tmp_path / "nope")]) == 2
    assert f"--reward folder {str(tmp_path / 'nope')!r} does not exist" in capsys.readouterr().err
    assert main(args + ["--reward", str(world_dir / "sft")]) == 2
    assert "is a 'lm' model, not a reward model" in capsys.readouterr().err
