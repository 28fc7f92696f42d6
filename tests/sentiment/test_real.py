"""The real task's files, as `tqjax sentiment setup` and `tqjax sentiment train` leave them in
~/.cache/tqjax: marked ``slow``, so `make test` (offline, `-m "not slow"`) deselects them. Run them
with ``pytest -m slow tests/sentiment``; without the files they fail, saying which command makes
them."""

from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import pytest

from tqjax.sentiment.data import read_polarity_csv, read_splits, review_prompts
from tqjax.sentiment.setup import SentimentPaths

pytestmark = pytest.mark.slow
PATHS = SentimentPaths(os.path.expanduser("~/.cache/tqjax"))
CHECKPOINTS = os.path.join(PATHS.root, "checkpoints")


def need(path: str, command: str) -> str:
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: run `{command}` first")
    return path


def test_real_corpora_splits():
    need(PATHS.sentences_csv, "tqjax sentiment setup")
    assert read_splits(PATHS.sentences_csv).sizes() == (3200, 400, 400)
    reviews = read_splits(need(PATHS.reviews_csv, "tqjax sentiment setup"))
    assert reviews.sizes() == (1200, 150, 150)
    assert len(review_prompts(reviews.val, 32)) == 32 and len(review_prompts(reviews.test)) == 150


def test_no_tracked_file_holds_corpus_text():
    """The corpora are for personal use: no file in git may hold 8 consecutive words of them."""
    word = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

    def shingles(text):
        words = word.findall(text.lower())
        return {hash(tuple(words[i:i + 8])) for i in range(len(words) - 7)}

    corpus = set()
    for path in (PATHS.reviews_csv, PATHS.sentences_csv):
        for example in read_polarity_csv(need(path, "tqjax sentiment setup")):
            corpus |= shingles(example.text)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.split("\0")
    leaks = []
    for name in tracked:
        if name and name.endswith((".py", ".md", ".txt", ".json", ".jsonl", ".csv", ".html", ".toml", ".cfg")):
            with open(os.path.join(root, name), encoding="utf-8", errors="replace") as f:
                if shingles(f.read()) & corpus:
                    leaks.append(name)
    assert leaks == []


def test_the_real_model_completes_a_fact():
    """SmolLM2-135M, converted from the GGUF file: greedy decoding completes a fact."""
    import tqjax

    sft = tqjax.load(need(PATHS.checkpoint, "tqjax sentiment setup"))
    out = tqjax.decode(tqjax.TQParams(sft=sft), ["The capital of France is"],
                       tqjax.DecodeConfig(method="sft", max_new_tokens=1))
    assert out.texts[0].strip() == "Paris"


def test_tq_on_one_review_prompt():
    """TQ* with the trained reward model and DPO baseline on one review prefix: the reported
    reward is the reward model's score of the decoded text, read again on its own."""
    import tqjax

    load = lambda name: tqjax.load(need(os.path.join(CHECKPOINTS, name), "tqjax sentiment train"))
    sft = tqjax.load(need(PATHS.checkpoint, "tqjax sentiment setup"))
    params = tqjax.TQParams(sft=sft, baseline=load("baseline"), reward=load("reward"))
    out = tqjax.decode(params, ["The movie was"],
                       tqjax.DecodeConfig(method="tq", k=2, horizon=2, max_new_tokens=4,
                                          ignore_eos=True))
    assert len(out.tokens[0]) == 4
    ids = list(sft.tokenizer.encode("The movie was")) + out.tokens[0]
    again = tqjax.reward(params.reward, np.asarray([ids]), np.asarray([len(ids)]))
    np.testing.assert_allclose(out.rewards, np.asarray(again), atol=1e-3)
    assert np.all(out.kl >= 0)
