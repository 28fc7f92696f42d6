"""Run several decoding methods on one prompt set and summarise them side by side."""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from tqjax.api.decode import TQParams, decode
from tqjax.decoding.config import DecodeConfig
from tqjax.eval.metrics import coherence, diversity, win_rates


@dataclasses.dataclass(frozen=True)
class Method:
    """One row of a comparison: a name, its models and its decoding config."""

    name: str
    params: TQParams
    config: DecodeConfig


def forwards_per_token(config: DecodeConfig) -> int:
    """Model token-forwards per generated token (DESIGN §2 cost model).

    tq / cd: k·M·(H+1) rollout forwards of the rollout model and as many of the reward model,
    plus one commit forward of each of the three models; args: k reward forwards of [s, z] plus
    two commits; best-of-N: N policy and N reward forwards; plain decoding: one.
    """
    if config.method in ("tq", "cd"):
        return 2 * config.k * config.rollouts * (config.horizon + 1) + 3
    if config.method == "args":
        return config.k + 2
    if config.method == "bon":
        return 2 * config.n
    return 1


def matched_bon_n(config: DecodeConfig) -> int:
    """N for best-of-N with about the model forwards per token of ``config`` (a tq/cd config)."""
    return max(1, round(forwards_per_token(config) / 2))


def bon_kl(n: int) -> float:
    """KL(best-of-n ‖ base) = log n − (n − 1)/n (the standard analytic value for continuous rewards)."""
    return float(np.log(n) - (n - 1) / n)


def run(method: Method, prompts: list, batch_size: int, gold: Callable[[str, str], float] | None,
        progress: bool = True, warmup: bool = True) -> dict:
    """Decode ``prompts`` in batches; return per-prompt arrays and the wall time.

    With ``warmup`` the first batch is decoded once before the clock starts, so tokens/s excludes
    compilation (a sweep over α reuses the compiled program and needs no warm-up).
    """
    tokens, texts, rewards, kl = [], [], [], []
    if warmup:
        decode(method.params, prompts[:batch_size], method.config)
    start = time.perf_counter()
    batches = range(0, len(prompts), batch_size)
    for lo in tqdm(batches, desc=method.name, disable=not progress, leave=False):
        out = decode(method.params, prompts[lo:lo + batch_size], method.config, indices=range(lo, min(lo + batch_size, len(prompts))))
        tokens += out.tokens
        texts += out.texts or [None] * len(out.tokens)
        rewards += list(out.rewards) if out.rewards is not None else [np.nan] * len(out.tokens)
        kl += [bon_kl(method.config.n)] * len(out.tokens) if method.config.method == "bon" else list(out.kl)
    seconds = time.perf_counter() - start
    result = dict(tokens=tokens, texts=texts, rewards=np.asarray(rewards, np.float64), kl=np.asarray(kl, np.float64),
                  seconds=seconds)
    if gold is not None:
        result["gold"] = np.asarray([gold(p, t) for p, t in zip(prompts, texts)], np.float64)
    return result


def summarise(results: dict, sft_model, prompt_ids: list, reference: str = "sft") -> dict:
    """Per method: mean gold reward, RM reward, KL, diversity, coherence, win rates, tokens/s."""
    ref = results.get(reference)
    table = {}
    for name, r in results.items():
        n_tokens = sum(len(t) for t in r["tokens"])
        words = [(t or "").split() for t in r["texts"]]
        row = dict(reward=float(np.nanmean(r["rewards"])), kl=float(np.mean(r["kl"])),
                   diversity=float(np.mean([diversity(w) for w in words])),
                   coherence=float(np.mean(coherence(sft_model, prompt_ids, r["tokens"]))),
                   length=n_tokens / len(r["tokens"]), tokens_per_s=n_tokens / r["seconds"], seconds=r["seconds"])
        if "gold" in r:
            row["gold_reward"] = float(np.mean(r["gold"]))
            if ref is not None and "gold" in ref:
                row["win_rate_vs_sft"], row["win_tie_rate_vs_sft"] = win_rates(r["gold"], ref["gold"])
        table[name] = row
    return table


COLUMNS = [("gold_reward", "gold r", "{:+.3f}"), ("reward", "RM reward", "{:+.3f}"), ("kl", "KL", "{:.2f}"),
           ("win_rate_vs_sft", "win vs SFT (gold)", "{:.0%}"), ("diversity", "diversity", "{:.3f}"),
           ("coherence", "coherence*", "{:.3f}"), ("length", "tokens", "{:.1f}"), ("tokens_per_s", "tokens/s", "{:.1f}")]


def markdown_table(table: dict) -> str:
    """The summary as a Markdown table (* coherence: SFT hidden-state cosine, see metrics.coherence)."""
    head = "| method | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    rule = "| --- |" + " ---: |" * len(COLUMNS)
    rows = [head, rule]
    for name, row in table.items():
        cells = [fmt.format(row[key]) if key in row and row[key] == row[key] else "–" for key, _, fmt in COLUMNS]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
