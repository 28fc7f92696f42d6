"""The CLI checks that the model folders given are the ones the method needs, before loading."""

import json

import pytest

from tqjax.cli.main import main


@pytest.mark.parametrize("command", ["decode", "batch"])
def test_missing_reward_folder_is_named_before_loading(tmp_path, capsys, command):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": 0, "prompt_ids": [1, 2]}) + "\n")
    missing = str(tmp_path / "never-read")      # not a folder: loading it would fail differently
    io = (["--prompts", str(prompts), "--out", str(tmp_path / "o.jsonl")] if command == "decode"
          else ["--input", str(prompts), "--output", str(tmp_path / "out")])
    code = main([command, "--sft", str(tmp_path), "--baseline", missing, "--method", "tq"] + io)
    err = capsys.readouterr().err
    assert code == 2
    assert "needs a reward model" in err and "model folders given: --sft, --baseline" in err
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "out").exists()
