"""Every command's flags: a bad value is an argparse-style error (exit status 2) that names the
flag, before any model is loaded or any file written, never a traceback."""

from __future__ import annotations

import pytest

from tqjax.cli.main import main

CASES = [
    ("decode", ["--batch-size", "-1"]),
    ("decode", ["--batch-size", "two"]),
    ("decode", ["--k", "0"]),
    ("decode", ["--k", "ten"]),
    ("decode", ["--alpha", "nan"]),
    ("decode", ["--method", "beam"]),
    ("decode", ["--top-p", "1.5"]),
    ("decode", ["--seed", "-3"]),
    ("decode", ["--stop-token-ids", "2,eos"]),
    ("decode", ["--mesh", "2"]),
    ("decode", ["--mesh", "0,1"]),
    ("decode", ["--dtype", "int8"]),
    ("decode", ["--memory-budget", "lots"]),
    ("batch", ["--batch-size", "-1"]),
    ("batch", ["--num-processes", "0"]),
    ("batch", ["--process-id", "-1"]),
    ("batch", ["--mesh", "a,b"]),
    ("batch", ["--max-new-tokens", "0"]),
    ("eval", ["--n-prompts", "0"]),
    ("eval", ["--val-prompts", "-1"]),
    ("eval", ["--batch-size", "0"]),
    ("eval", ["--dtype", "float33"]),
    ("eval", ["--horizon", "-1"]),
    ("plan", ["--prompt-len", "0"]),
    ("plan", ["--data", "0"]),
    ("plan", ["--model", "x"]),
    ("plan", ["--batch-size", "-2"]),
    ("plan", ["--rollouts", "0"]),
    ("train world", ["--seed", "-1"]),
    ("train world", ["--steps-scale", "0"]),
    ("train world", ["--steps-scale", "inf"]),
    ("train world", ["--onpolicy-rounds", "-1"]),
    ("convert", ["--dtype", "int4"]),
    ("sentiment setup", ["--index-url", "pypi.org/simple"]),
    ("sentiment setup", ["--cache", " "]),
    ("sentiment eval", ["--n-prompts", "0"]),
    ("sentiment eval", ["--methods", "sft,magic"]),
    ("sentiment eval", ["--alphas", "1,x"]),
    ("sentiment eval", ["--bon-ns", "0"]),
    ("sentiment eval", ["--k", "0"]),
]
REQUIRED = {"batch": ["--input", "in.jsonl", "--output", "out"], "train world": ["--out", "out"],
            "convert": ["hf", "out"], "eval": ["--out", "out"]}


@pytest.mark.parametrize("command, flags", CASES, ids=[f"{c}{' '.join(f)}" for c, f in CASES])
def test_a_bad_flag_value_is_an_argparse_error_naming_the_flag(command, flags, tmp_path,
                                                                monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*command.split(), *REQUIRED.get(command, []), *flags]) == 2
    err = capsys.readouterr().err
    assert f"error: {flags[0]} " in err, err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_every_command_has_cases():
    from tqjax.cli.main import _commands

    names = {m.__name__.rsplit(".", 1)[1] for m in _commands()}
    assert names == {c.split()[0] for c, _ in CASES}
