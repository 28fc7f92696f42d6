"""Run several decoding methods on one prompt set and summarise them side by side."""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from tqjax.api.decode import TQParams, decode
from tqjax.decoding.config import DecodeConfig
from tqjax.decoding.decode_plan import DecodePlan, matched_bon_n
from tqjax.eval.metrics import diversity, win_indicators
from tqjax.eval.stats import bootstrap_ci


@dataclasses.dataclass(frozen=True)
class Method:
    """One row of a comparison: a name, its models and its decoding config."""

    name: str
    params: TQParams
    config: DecodeConfig


def forwards_per_token(config: DecodeConfig) -> int:
    """Model token-forwards per committed token, counted as the engine runs them
    (`DecodePlan.forwards`): for tq / cd, the rollout model's k·M·H proposals, each reader's
    k·M·(H+1) positions (π_sft's H for the implicit r_BL) and one commit per model."""
    return DecodePlan.nominal(config, baseline_reward=config.transfer == "indirect").total_forwards


def bon_kl(n: int) -> float:
    """KL(best-of-n ‖ base) = log n − (n − 1)/n (the standard analytic value for continuous rewards)."""
    return float(np.log(n) - (n - 1) / n)


def run(method: Method, prompts: list, batch_size: int, gold: Callable[[str, str], float] | None,
        progress: bool = True, warmup: bool | list = True) -> dict:
    """Decode ``prompts`` with continuous batching (``batch_size`` prompts in flight, the bar
    counting finished prompts); return per-prompt arrays and the wall time.

    With ``warmup`` the first ``batch_size`` prompts are decoded once before the clock starts, so
    tokens/s excludes compilation (a sweep over α reuses the compiled programs and needs no
    warm-up). ``warmup`` may instead be a list of other prompts (e.g. samples to show): the
    warm-up decodes only them, and the result's ``"warmup"`` holds their ``tokens`` and
    ``texts``. This costs no wasted decoding, but the timed run still compiles the shapes the
    warm-up did not have (more rows than the list, longer prompts): its time includes that.
    """
    extra = None
    if warmup is True:
        decode(method.params, prompts[:batch_size], method.config, batch_size=batch_size)
    elif warmup:
        out = decode(method.params, list(warmup), method.config, batch_size=batch_size)
        extra = dict(tokens=[list(map(int, t)) for t in out.tokens], texts=out.texts or [None] * len(out.tokens))
    start = time.perf_counter()
    with tqdm(total=len(prompts), desc=method.name, disable=not progress, leave=False,
              unit="prompt") as bar:
        out = decode(method.params, prompts, method.config, batch_size=batch_size,
                     on_done=lambda i, one: bar.update(1))
    tokens = out.tokens
    texts = out.texts or [None] * len(out.tokens)
    rewards = list(out.rewards) if out.rewards is not None else [np.nan] * len(out.tokens)
    kl = [bon_kl(method.config.n)] * len(out.tokens) if method.config.method == "bon" else list(out.kl)
    seconds = time.perf_counter() - start
    result = dict(tokens=tokens, texts=texts, rewards=np.asarray(rewards, np.float64), kl=np.asarray(kl, np.float64),
                  logp_sft=np.asarray(out.logp_sft, np.float64), seconds=seconds)
    if extra is not None:
        result["warmup"] = extra
    if gold is not None:
        result["gold"] = np.asarray([gold(p, t) for p, t in zip(prompts, texts)], np.float64)
    return result


def prompt_metrics(r: dict, coherence_P, reference: dict | None = None, extra=None) -> dict[str, np.ndarray]:
    """Per-prompt arrays ``[P]`` of one method's `run` result: the unit of every mean and interval.

    gold_reward (when the task has a gold reward), reward (the target RM), kl, diversity,
    coherence (``coherence_P``), length (tokens), with a ``reference`` result the per-prompt
    win (tie ½) and win-tie indicators on gold r, and ``extra(r)``'s arrays (name -> ``[P]``).
    """
    out = dict(reward=np.asarray(r["rewards"], np.float64), kl=np.asarray(r["kl"], np.float64),
               diversity=np.array([diversity((t or "").split()) for t in r["texts"]], np.float64),
               coherence=np.asarray(coherence_P, np.float64),
               length=np.array([len(t) for t in r["tokens"]], np.float64))
    if "gold" in r:
        out["gold_reward"] = np.asarray(r["gold"], np.float64)
        if reference is not None and "gold" in reference:
            out["win_rate_vs_sft"], out["win_tie_rate_vs_sft"] = win_indicators(r["gold"], reference["gold"])
    if extra is not None:
        out.update({name: np.asarray(v, np.float64) for name, v in extra(r).items()})
    return out


def _mean(v: np.ndarray) -> float:
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def describe(metrics: dict, seed: int = 0) -> dict:
    """The mean of every per-prompt metric, and under ``"ci"`` its bootstrap 95% interval over prompts."""
    row = {name: _mean(v) for name, v in metrics.items()}
    row["ci"] = {name: list(bootstrap_ci(v, seed=seed)) for name, v in metrics.items()}
    return row


def summarise(results: dict, coherence: Callable[[dict], np.ndarray], reference: str = "sft", seed: int = 0,
              extra=None) -> dict:
    """Per method: means with 95% intervals (`describe`), tokens/s and seconds.

    ``coherence(result)`` gives the per-prompt coherence of one `run` result; ``extra(result)``
    more per-prompt metrics (name -> ``[P]``).
    """
    ref = results.get(reference)
    return {name: summary_row(r, coherence(r), ref, seed, extra) for name, r in results.items()}


def summary_row(r: dict, coherence_P, reference: dict | None = None, seed: int = 0, extra=None) -> dict:
    """One `run` result's means with 95% intervals (`describe`), tokens/s and seconds."""
    row = describe(prompt_metrics(r, coherence_P, reference, extra), seed)
    row.update(tokens_per_s=sum(len(t) for t in r["tokens"]) / r["seconds"], seconds=r["seconds"])
    return row


COLUMNS = [("gold_reward", "gold r", "{:+.2f}"), ("reward", "RM reward", "{:+.2f}"), ("kl", "KL", "{:.1f}"),
           ("win_rate_vs_sft", "win vs SFT (gold)", "{:.0%}"), ("diversity", "diversity", "{:.2f}"),
           ("coherence", "coherence", "{:.2f}"), ("length", "tokens", "{:.1f}"), ("tokens_per_s", "tokens/s", "{:.1f}")]


def _cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None or value != value:
        return "–"
    lo, hi = (row.get("ci") or {}).get(key, (None, None))
    if lo is None or lo != lo:
        return fmt.format(value)
    return f"{fmt.format(value)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def selected_name(method: str, pick: dict) -> str:
    """The row name of a method at its validation-chosen value, e.g. ``tq @ α=2 (val)``."""
    symbol = "α" if pick["param"] == "alpha" else pick["param"]
    return f"{method} @ {symbol}={pick['value']:g} (val)"


def markdown_table(table: dict, selected: dict | None = None, coherence_label: str = "coherence",
                   columns: list | None = None) -> str:
    """The summary as a Markdown table, each mean with its [95% interval].

    ``selected``: method -> {"param", "value", "test": row} (`tqjax.eval.select.select`); each such
    row follows its method's fixed-config row, named by `selected_name`. ``columns``: (key, label,
    format) triples (default `COLUMNS`).
    """
    columns = COLUMNS if columns is None else columns
    labels = [coherence_label if key == "coherence" else label for key, label, _ in columns]
    rows = ["| method | " + " | ".join(labels) + " |", "| --- |" + " ---: |" * len(columns)]
    for name, row in table.items():
        rows.append(f"| {name} | " + " | ".join(_cell(row, key, fmt) for key, _, fmt in columns) + " |")
        if selected and name in selected:
            cells = [_cell(selected[name]["test"], key, fmt) for key, _, fmt in columns]
            rows.append(f"| {selected_name(name, selected[name])} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def paired_markdown(paired: list[dict], score: str = "gold r") -> str:
    """The paired tests ("A vs B" on ``score``, `tqjax.eval.stats.paired_test`) as a Markdown table."""
    rows = [f"| A | B | mean {score} A − B [95% CI] | A better / tied / worse | p (sign-flip) |",
            "| --- | --- | ---: | ---: | ---: |"]
    for t in paired:
        lo, hi = t["ci"]
        rows.append(f"| {t['a']} | {t['b']} | {t['mean_diff']:+.2f} [{lo:+.2f}, {hi:+.2f}] | "
                    f"{t['better']} / {t['tied']} / {t['worse']} | {t['p_value']:.3g} |")
    return "\n".join(rows)


def agreement_markdown(agreement: dict) -> str:
    """Per method, the reward model's Spearman ρ and pairwise accuracy against gold r
    (`tqjax.eval.metrics.rank_agreement` of one method's outputs) as a Markdown table."""
    rows = ["| outputs of | Spearman ρ (RM vs gold r) | pairwise accuracy | pairs |", "| --- | ---: | ---: | ---: |"]
    for name, a in agreement.items():
        rows.append(f"| {name} | {a['spearman']:+.2f} | {a['pairwise_accuracy']:.2f} | {a['pairs']} |")
    return "\n".join(rows)
