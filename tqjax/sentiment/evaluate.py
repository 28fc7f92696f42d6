"""Evaluation of the real task (issue 22): every method on held-out review prompts, scored by the
learned reward model r and by an independent judge.

The machinery is `tqjax eval`'s (`tqjax.eval.harness`): the same methods, intervals, validation
choice of α, paired tests and frontier plot. What is particular here: the judge's probability that
a review is positive stands where the world task has its gold reward (so the table shows whether
r is being hacked), its positive rate and the response's perplexity under the SFT model are extra
columns, every finished method is kept under ``OUT/runs`` so that a rerun skips it, and
`SAMPLE_PROMPTS`, written for tqjax, give the side-by-side samples: the review prompts come from a
personal-use corpus, so no report written here holds their text.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable

import numpy as np


# Neutral openings written for tqjax (not from the corpus), decoded by every method as samples.
SAMPLE_PROMPTS = (
    "I watched this movie last night and",
    "The film begins in a small town where",
    "My friends told me to see this one, so",
    "As someone who read the book first, I",
    "The new picture from this director is",
    "When the lights came up after the last scene,",
)
METHODS = ("sft", "baseline", "bon", "args", "cd", "tq", "tq-indirect")
KEY = "gold_reward"         # the judge's probability stands where a task's gold reward goes
COLUMNS = [("gold_reward", "judge P(positive)", "{:.2f}"), ("judge_positive", "judge positive", "{:.0%}"),
           ("reward", "r (RM)", "{:+.2f}"), ("kl", "KL", "{:.1f}"), ("perplexity", "PPL under SFT", "{:.1f}"),
           ("win_rate_vs_sft", "win vs SFT (judge)", "{:.0%}"), ("diversity", "diversity", "{:.2f}"),
           ("coherence", "coherence", "{:.2f}"), ("length", "tokens", "{:.1f}"), ("seconds", "seconds", "{:.0f}")]
PAIRED_AGAINST = ["sft", "baseline", "bon", "args", "cd"]


class MissingInputError(FileNotFoundError):
    """A folder the evaluation needs is not there; the message names it and the command that makes it."""


@dataclasses.dataclass(frozen=True)
class EvalInputs:
    """The folders the evaluation reads, under ``CACHE/sentiment``."""

    cache: str

    @property
    def root(self) -> str:
        return os.path.join(self.cache, "sentiment")

    @property
    def sft(self) -> str:
        return os.path.join(self.root, "model", "smollm2-135m-instruct")

    @property
    def reviews_csv(self) -> str:
        return os.path.join(self.root, "data", "reviews.csv")

    def checkpoint(self, name: str) -> str:
        return os.path.join(self.root, "checkpoints", name)

    def dpo_beta(self) -> float | None:
        """The β the baseline was trained with (``train.json``), the β of TQ*'s indirect transfer; None
        when the report does not say."""
        path = os.path.join(self.root, "checkpoints", "train.json")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            beta = json.load(f).get("dpo", {}).get("beta")
        return None if beta is None else float(beta)

    def check(self) -> None:
        """Raise `MissingInputError` for the first missing input, naming the command that makes it."""
        cache = f" --cache {self.cache}"
        for path, what, command in (
                (self.sft, "the SFT model (SmolLM2-135M-Instruct)", f"tqjax sentiment setup{cache}"),
                (self.reviews_csv, "the review data", f"tqjax sentiment setup{cache}"),
                *((self.checkpoint(n), f"the {n} checkpoint", f"tqjax sentiment train{cache}")
                  for n in ("reward", "baseline", "judge"))):
            if not os.path.exists(path):
                raise MissingInputError(f"{path} ({what}) does not exist: run `{command}` first")


def load_judge(path: str):
    """The judge trained by `tqjax sentiment train` (`tqjax.sentiment.judge.Judge`)."""
    from tqjax.sentiment.judge import Judge

    return Judge.load(path)


def judge_score(judge) -> Callable[[str, str], float]:
    """``gold(prompt, response)``: the judge's probability that ``prompt + response`` is positive."""
    def gold(prompt: str, text: str | None) -> float:
        return float(np.asarray(judge.positive_prob([prompt + (text or "")]), np.float64)[0])
    return gold


def extra_metrics(r: dict) -> dict:
    """The task's per-prompt columns beyond `tqjax.eval.compare.prompt_metrics`: the judge's positive
    verdict (probability > 0.5) and the response's perplexity under the SFT model."""
    from tqjax.eval.metrics import perplexity

    out = dict(perplexity=perplexity(r["logp_sft"], [len(t) for t in r["tokens"]]))
    if "gold" in r:
        out["judge_positive"] = (np.asarray(r["gold"]) > 0.5).astype(np.float64)
    return out


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """What to run: method names, α and N sweeps (chosen on validation), batch size, the coherence
    encoder (`tqjax.eval.encoder.coherence_scorer`) and a description of the prompts' split."""

    methods: tuple = METHODS
    alphas: tuple = ()
    bon_ns: tuple = ()
    batch_size: int = 16
    coherence_model: str = "auto"
    coherence_pooling: str | None = None
    split: str = ""
    context: str = ""


def evaluate(sft, baseline, reward, judge, test: list[str], val: list[str], config, out: str,
             options: EvalOptions = EvalOptions(), log: Callable[[str], None] = print) -> dict:
    """Run every method of ``options`` on the ``test`` prompts (α / N chosen on ``val``), write
    ``out/{eval.json, eval.md, frontier.png, samples.md}`` and return the report (eval.json).

    sft, baseline, reward: tqjax models (the baseline is also the indirect transfer's ρ_BL, its
    r_BL the implicit β·log(ρ_BL/π_sft)); judge: anything with ``positive_prob(texts) -> [P]``.
    Finished methods are kept in ``out/runs`` (outputs only, never prompts) and read back by a rerun.
    """
    from tqjax.api.decode import TQParams
    from tqjax.eval.encoder import coherence_scorer
    from tqjax.eval.harness import (RunStore, method_table, paired_tests, run_methods, summarise_runs)

    unknown = [n for n in options.methods if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; expected a subset of {list(METHODS)}")
    direct = TQParams(sft=sft, baseline=baseline, reward=reward)
    table = method_table(direct, direct, config)
    methods = [table[n] for n in options.methods]
    coherence, coherence_info = coherence_scorer(options.coherence_model, options.coherence_pooling, sft, test)
    gold = judge_score(judge)
    store = RunStore(os.path.join(out, "runs"))
    _keep_out_of_git(store.folder)
    records = run_methods(methods, test, val, options.batch_size, gold, list(options.alphas), list(options.bon_ns),
                          KEY, store=store, context=options.context, samples=list(SAMPLE_PROMPTS), log=log)
    summary = summarise_runs(records, coherence, KEY, extra=extra_metrics)
    groups = [(a, [b for b in PAIRED_AGAINST if b in records]) for a in ("tq", "tq-indirect")]
    paired = paired_tests({n: rec["result"]["gold"] for n, rec in records.items()}, summary, groups, "judge")
    report = _report(summary, records, methods, test, val, config, options, coherence_info, paired)
    _write(out, report, summary, records, coherence_info, paired, len(test), len(val), gold, log)
    return report


def _keep_out_of_git(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, ".gitignore"), "w") as f:
        f.write("# per-method outputs on corpus prompts (personal-use data): never committed\n*\n")


def _report(summary, records, methods, test, val, config, options, coherence_info, paired) -> dict:
    from tqjax.eval.harness import selection_report, validation_report
    from tqjax.eval.stats import LEVEL, RESAMPLES

    return dict(
        task="sentiment (issue 22): SmolLM2-135M-Instruct steered to positive movie reviews",
        methods=summary["table"], prompts=len(test), validation_prompts=len(val), split=options.split,
        score="judge: the independent judge's probability that prompt + response is positive (gold_reward "
              "column); judge_positive: the share it calls positive (> 0.5); reward: the learned RM r",
        config=dataclasses.asdict(config), coherence=coherence_info,
        intervals=dict(kind="percentile bootstrap over prompts", level=LEVEL, resamples=RESAMPLES, seed=0),
        selected=selection_report(summary, "judge P(positive)"), paired=paired, frontier=summary["frontier"],
        validation=validation_report(summary),
        wall_s={n: rec["wall_s"] for n, rec in records.items()},
        matched_compute=dict(bon_n=next((m.config.n for m in methods if m.name == "bon"), None)))


def _write(out, report, summary, records, coherence_info, paired, n_test, n_val, gold, log) -> None:
    from tqjax.eval.compare import markdown_table, paired_markdown
    from tqjax.eval.harness import plot_frontier
    from tqjax.eval.stats import LEVEL, RESAMPLES

    with open(os.path.join(out, "eval.json"), "w") as f:
        json.dump(report, f, indent=2)
    md = markdown_table(summary["table"], summary["selected"], coherence_info["label"], columns=COLUMNS)
    notes = [f"{n_test} test prompts (the first words of held-out reviews); each figure is a mean over them with its "
             f"{LEVEL:.0%} percentile-bootstrap interval in brackets ({RESAMPLES} resamples of the prompts).",
             "judge P(positive): the independent judge's probability that prompt + response is a positive review; "
             "r (RM): the learned reward model the methods steer by; baseline: the DPO-tuned model; bon: "
             f"best-of-{report['matched_compute']['bon_n']}, compute-matched to tq; tq-indirect: TQ* with the "
             "implicit r_BL = β·log(ρ_BL/π_sft).",
             "PPL under SFT: exp of the response's mean negative log-likelihood under the SFT model (fluency).",
             f"{coherence_info['label']}: cosine of prompt and response embeddings by {coherence_info['encoder']}.",
             "seconds: decoding the test prompts (after decoding the six sample prompts, which compiles most "
             "but not all of the method's programs); eval.json's wall_s: each method's whole run (samples, "
             "sweeps and validation included)."]
    if summary["selected"]:
        notes.append(f"\"@ α=… (val)\" rows: the value with the highest mean judge P(positive) on {n_val} "
                     "validation prompts, reported on the test prompts.")
    md += "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    if paired:
        md += f"\n### TQ* against each method on the judge's P(positive) (paired over the {n_test} test prompts)\n\n"
        md += paired_markdown(paired, score="judge P(positive)") + "\n"
    with open(os.path.join(out, "eval.md"), "w") as f:
        f.write(md)
    log(md)
    plot = os.path.join(out, "frontier.png")
    if plot_frontier(summary, plot, KEY, "judge P(positive) (mean over test prompts)"):
        log(f"frontier plot: {plot}")
    with open(os.path.join(out, "samples.md"), "w") as f:
        f.write(samples_markdown(records, gold))


def samples_markdown(records: dict, gold: Callable[[str, str], float]) -> str:
    """Every method's response to each of `SAMPLE_PROMPTS` side by side, with the judge's P(positive)."""
    lines = ["# Sample responses", "",
             "Each method's response to six openings written for tqjax (not from the review corpus), decoded "
             "with the evaluation's settings; the judge's P(positive) of prompt + response in brackets.", ""]
    for i, prompt in enumerate(SAMPLE_PROMPTS):
        lines += [f"## {i + 1}. \u201c{prompt}\u2026\u201d", "", "| method | response | judge |", "| --- | --- | ---: |"]
        for name, rec in records.items():
            text = rec["result"]["warmup"]["texts"][i] or ""
            cell = text.replace("|", "\\|").replace("\n", " ").strip() or "(empty)"
            lines.append(f"| {name} | {cell} | {gold(prompt, text):.2f} |")
        lines.append("")
    return "\n".join(lines)
