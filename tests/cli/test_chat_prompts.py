"""Prompt files with chat messages through `tqjax decode`, `tqjax batch` and `tqjax eval`."""

import json

import pytest

import tqjax
from tests.api.chat_helpers import CONVERSATIONS, save_chat_models
from tqjax.cli.main import main

FAST = ["--k", "3", "--horizon", "2", "--max-new-tokens", "5"]
CONFIG = tqjax.DecodeConfig(k=3, horizon=2, max_new_tokens=5)
EVAL_ROLES = ("sft", "baseline-direct", "baseline-indirect", "reward", "reward-baseline")
RECORDS = [{"id": "a", "messages": CONVERSATIONS[0]}, {"id": 7, "prompt": "How are you today?"},
           {"id": "c", "messages": CONVERSATIONS[2]}, {"id": "d", "prompt_ids": [1, 40, 41]}]


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat_world")
    save_chat_models(root, "llama3", roles=EVAL_ROLES)
    return root


def write_prompts(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def models(root):
    return ["--sft", str(root / "sft"), "--baseline", str(root / "baseline-direct"),
            "--reward", str(root / "reward")]


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_decode_and_batch_equal_the_python_api(chat_dir, tmp_path):
    prompts = write_prompts(tmp_path / "p.jsonl", RECORDS)
    assert main(["decode", *models(chat_dir), "--prompts", prompts, "--out", str(tmp_path / "o.jsonl"), *FAST]) == 0
    assert main(["batch", *models(chat_dir), "--input", prompts, "--output", str(tmp_path / "b"), *FAST]) == 0
    params = tqjax.TQParams(tqjax.load(chat_dir / "sft"), tqjax.load(chat_dir / "baseline-direct"),
                            tqjax.load(chat_dir / "reward"))
    expected = tqjax.decode(params, [next(r[k] for k in ("messages", "prompt", "prompt_ids") if k in r)
                                     for r in RECORDS], CONFIG)
    decoded, batched = read_lines(tmp_path / "o.jsonl"), read_lines(tmp_path / "b" / "part-00000.jsonl")
    assert [line["id"] for line in decoded] == [r["id"] for r in RECORDS]
    assert [line["tokens"] for line in decoded] == expected.tokens
    assert [line["text"] for line in decoded] == expected.texts
    assert [line["reward"] for line in decoded] == pytest.approx(expected.rewards.tolist(), abs=1e-6)
    assert sorted((line["index"], line["tokens"]) for line in batched) == list(enumerate(expected.tokens))


def test_eval_takes_a_messages_file(chat_dir, tmp_path):
    prompts = write_prompts(tmp_path / "p.jsonl", RECORDS[:3])
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoints", str(chat_dir), "--prompts", prompts, "--methods", "sft,tq",
                 "--out", str(out), *FAST]) == 0
    report = json.load(open(out / "eval.json"))
    assert report["prompts"] == 3 and set(report["methods"]) == {"sft", "tq"}


def test_no_chat_template_fails_before_any_output(world_dir, tmp_path, capsys):
    prompts = write_prompts(tmp_path / "p.jsonl", RECORDS)
    plain = ("is a list of chat messages but the SFT model's tokenizer has no chat template; pass a "
             "string or token ids instead")
    worlds = ["--sft", str(world_dir / "sft"), "--baseline", str(world_dir / "baseline-direct"),
              "--reward", str(world_dir / "reward")]
    runs = [(["decode", *worlds, "--prompts", prompts, "--out", str(tmp_path / "o.jsonl"), "--batch-size", "1"],
             f"{prompts}: id 'a': prompt 0 {plain}", tmp_path / "o.jsonl"),
            (["batch", *worlds, "--input", prompts, "--output", str(tmp_path / "b")],
             f"{prompts}: prompt id 'a' {plain}", tmp_path / "b"),
            (["eval", "--checkpoints", str(world_dir), "--prompts", prompts, "--out", str(tmp_path / "e")],
             f"prompt 0 {plain}", tmp_path / "e")]
    for args, message, output in runs:
        assert main([*args, *FAST]) == 2
        assert message in capsys.readouterr().err
        assert not output.exists()
    assert not (tmp_path / "o.jsonl.partial").exists()


def test_malformed_messages_line(chat_dir, tmp_path, capsys):
    prompts = write_prompts(tmp_path / "p.jsonl", [RECORDS[0], {"id": 2, "messages": [{"content": "hi"}]}])
    assert main(["decode", *models(chat_dir), "--prompts", prompts, "--out", str(tmp_path / "o.jsonl")]) == 2
    assert f'{prompts}:2: "messages": message 0 has no "role"' in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
