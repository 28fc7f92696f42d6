"""`DecodeOutput` and its builders: from the engine's per-row results, and by selecting and
joining the outputs of several batches."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class DecodeOutput:
    """Per prompt ``i``: ``tokens[i]`` generated ids (prompt excluded, EOS included when
    produced), ``texts[i]`` (None without a tokenizer), ``rewards[i]`` target reward of prompt +
    response (None without a reward model), ``logp_sft[i]`` Σ log π_sft of the response, ``kl[i]``
    Σ_t KL(π_alg‖π_sft) and ``log_ratio[i]`` Σ_t log π_alg(y_t) − log π_sft(y_t) (definitions in
    `tqjax.decoding.stats`). ``diagnostics``: ``steps`` (loop iterations), ``nonfinite[i]``
    (candidates, or best-of-N samples, with a non-finite value), ``fallbacks[i]`` (steps that fell
    back to the SFT argmax), and with ``DecodeConfig(diagnostics=True)`` ``rank[i]`` (chosen
    candidate per step, -1 on fallback) and ``q[i]`` (``[steps, k]`` Q̂); best-of-N adds
    ``sample_rewards`` ``[prompts, n]`` and ``kept``.
    """

    tokens: list
    texts: list | None
    rewards: np.ndarray | None
    logp_sft: np.ndarray
    kl: np.ndarray
    log_ratio: np.ndarray
    diagnostics: dict


def text_of(tokenizer, ids):
    if tokenizer is None:
        return None
    try:
        return tokenizer.decode(list(ids), skip_special_tokens=True)
    except TypeError:
        return tokenizer.decode(list(ids))


def pick(rows: list[dict], plan) -> dict:
    """One prompt's result: its row, or for best-of-N the kept sample (as `bon.best_of_n`)."""
    if plan.method != "bon":
        return rows[0]
    rewards = np.asarray([r["reward_B"] for r in rows], np.float32)
    finite = np.isfinite(rewards)
    best = int(np.argmax(np.where(finite, rewards, -np.inf))) if finite.any() else 0
    return dict(rows[best], bad_B=np.int32((~finite).sum()), fallback_B=np.int32(not finite.any()),
                rank_BN=np.asarray([best], np.int32), q_BNC=rewards[None], rewards_Bn=rewards)


def build(rows: list[dict], plan, tokenizer, has_reward: bool, steps: int) -> DecodeOutput:
    tokens = [r["tokens_BN"].tolist() for r in rows]
    stack = lambda name: np.stack([np.asarray(r[name]) for r in rows])
    diagnostics = dict(steps=steps, nonfinite=stack("bad_B"), fallbacks=stack("fallback_B"))
    if plan.method == "bon":
        diagnostics.update(sample_rewards=stack("rewards_Bn"), kept=stack("rank_BN")[:, 0])
    elif plan.diagnostics and plan.candidates:
        diagnostics.update(rank=[r["rank_BN"][:len(t)] for r, t in zip(rows, tokens)],
                           q=[r["q_BNC"][:len(t)] for r, t in zip(rows, tokens)])
    return DecodeOutput(tokens=tokens,
                        texts=None if tokenizer is None else [text_of(tokenizer, t) for t in tokens],
                        rewards=stack("reward_B") if has_reward else None,
                        logp_sft=stack("logp_sft_B"), kl=stack("kl_B"),
                        log_ratio=stack("log_ratio_B"), diagnostics=diagnostics)


def empty() -> DecodeOutput:
    """The output of no prompts (every prompt went to ``on_error``)."""
    none = np.zeros(0, np.float32)
    return DecodeOutput(tokens=[], texts=[], rewards=none, logp_sft=none, kl=none, log_ratio=none,
                        diagnostics={})


_PER_PROMPT = ("nonfinite", "fallbacks", "rank", "q", "sample_rewards", "kept")


def select(out: DecodeOutput, rows: list[int]) -> DecodeOutput:
    """The prompts ``rows`` of ``out``, as a `DecodeOutput` of their own."""
    take = lambda x: None if x is None else ([x[i] for i in rows] if isinstance(x, list)
                                             else np.asarray(x)[rows])
    diagnostics = {k: (take(v) if k in _PER_PROMPT else v) for k, v in out.diagnostics.items()}
    return DecodeOutput(tokens=take(out.tokens), texts=take(out.texts), rewards=take(out.rewards),
                        logp_sft=take(out.logp_sft), kl=take(out.kl), log_ratio=take(out.log_ratio),
                        diagnostics=diagnostics)


def concatenate(outs: list[DecodeOutput]) -> DecodeOutput:
    """Batch outputs as one, in order: per-prompt fields joined, ``steps``, ``reader_tokens``
    and ``cross_seconds`` summed over the batches."""
    def join(xs):
        if xs[0] is None:
            return None
        return [x for part in xs for x in part] if isinstance(xs[0], list) else np.concatenate(xs)

    diagnostics = {}
    for k, v in outs[0].diagnostics.items():
        parts = [o.diagnostics[k] for o in outs]
        if k in _PER_PROMPT:
            diagnostics[k] = join([p if isinstance(p, list) else np.asarray(p) for p in parts])
        elif isinstance(v, dict):
            diagnostics[k] = {name: sum(p.get(name, 0) for p in parts) for name in v}
        elif isinstance(v, (int, float, np.integer, np.floating)):
            diagnostics[k] = sum(parts)
        else:
            diagnostics[k] = parts
    return DecodeOutput(tokens=join([o.tokens for o in outs]), texts=join([o.texts for o in outs]),
                        rewards=join([o.rewards for o in outs]), logp_sft=join([o.logp_sft for o in outs]),
                        kl=join([o.kl for o in outs]), log_ratio=join([o.log_ratio for o in outs]),
                        diagnostics=diagnostics)
