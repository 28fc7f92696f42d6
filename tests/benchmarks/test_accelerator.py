"""Keeps benchmarks/accelerator.py ready for a lent GPU: its dry run (every part, tiny sizes, CPU)."""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))

import accelerator  # noqa: E402  (benchmarks/ is on the path now)
pytestmark = pytest.mark.filterwarnings("ignore:.*past_key_values.*:FutureWarning")


def test_dry_run_covers_the_random_and_the_real_model_parts(tmp_path, capsys):
    assert accelerator.main(["--dry-run", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.iterdir()
    out = json.loads(path.read_text())
    assert out["dry_run"] and out["real"] == "tiny"
    assert [r["batch"] for r in out["rows"]] == [2] and [r["batch"] for r in out["real_rows"]] == [2]
    row = out["real_rows"][0]
    assert row["tokens_per_s"] > 0 and row["compiled_mib"] > 0 and row["planned_mib"] > 0
    assert row["authors"]["device"] == "cpu" and row["authors"]["tokens_per_s"] > 0
    assert "authors'-style loop" in capsys.readouterr().out
