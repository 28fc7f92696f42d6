"""Keeps benchmarks/throughput.py from rotting: its comparison at the smallest size, tokens only."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))

import throughput  # noqa: E402  (benchmarks/ is on the path now; an import error fails the test)
pytestmark = pytest.mark.filterwarnings("ignore:.*past_key_values.*:FutureWarning")


@pytest.mark.parametrize("arch", ["llama", "neox"])
def test_tqjax_tokens_match_the_torch_references(arch):
    setting = throughput.Setting(arch=arch, prompts=2, prompt_len=5, k=2, horizon=2, new_tokens=2,
                                 size="tiny")
    res = throughput.compare(setting, authors_prompts=2, reps=1, log=lambda msg: None)
    assert set(res["impl"]) == {"tqjax", "torch-authors", "torch-batched"}
    assert all(len(t) == 2 for t in res["impl"]["tqjax"]["tokens"])
    assert res["agree"] == {"torch-authors": None, "torch-batched": None}
    assert res["flops"] > 0
