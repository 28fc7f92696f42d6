"""On-policy preference pairs for the target reward model, labelled by the gold reward.

A reward model trained only on the generator's reviews is scored, at decoding time, on text it
never saw: DPO samples, best-of-N picks and the responses that ARGS, CD and TQ* steer toward it.
Where it misjudges that text, the decoders optimise its errors. This module samples responses
to training prompts from the decoders that the evaluation compares (each `Source` is one method
and its settings, run with the current reward model through `tqjax.decode`), orders every two
responses to one prompt by the gold reward, and measures how well a reward model agrees with the
gold reward on each method's outputs.

The prompts are world prompts drawn from their own seed, minus every prompt of the evaluation's
held-out stream (`world.EVAL_PROMPT_SEED`), so the test and validation prompts of `tqjax eval`
never enter training.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence

import numpy as np

from tqjax import world
from tqjax.api.decode import TQParams, decode
from tqjax.decoding.config import DecodeConfig
from tqjax.eval.metrics import pad_rows, prompt_response_ids, rank_agreement, rm_scores
from tqjax.models import Model

EXCLUDED_EVAL_PROMPTS = 1024   # the first prompts of the evaluation stream, kept out of training


@dataclasses.dataclass(frozen=True)
class Source:
    """One way of answering a prompt: a name and the `DecodeConfig` fields it overrides."""

    name: str
    fields: tuple[tuple[str, object], ...]

    def config(self, base: DecodeConfig) -> DecodeConfig:
        return base.replace(**dict(self.fields))


def _s(name: str, **fields) -> Source:
    return Source(name, tuple(sorted(fields.items())))


SOURCES: tuple[Source, ...] = (
    _s("sft", method="sft", temperature=0.0),
    _s("sft T=1", method="sft", temperature=1.0),
    _s("baseline", method="baseline", temperature=0.0),
    _s("baseline T=1", method="baseline", temperature=1.0),
    _s("bon N=8", method="bon", n=8, temperature=1.0),
    _s("args α=1", method="args", alpha=1.0),
    _s("args α=2", method="args", alpha=2.0),
    _s("cd α=1", method="cd", alpha=1.0),
    _s("tq α=1", method="tq", alpha=1.0),
    _s("tq α=2", method="tq", alpha=2.0),
    _s("tq α=4", method="tq", alpha=4.0),
)


def training_prompts(n: int, seed: int) -> list[str]:
    """``n`` world prompts from ``seed``, none of them among the evaluation's held-out prompts."""
    held_out = set(world.sample_prompts(EXCLUDED_EVAL_PROMPTS, world.EVAL_PROMPT_SEED))
    out, draw = [], n
    while len(out) < n:
        out = [p for p in world.sample_prompts(draw, seed) if p not in held_out][:n]
        draw *= 2
    return out


def sample(params: TQParams, prompts: Sequence[str], sources: Sequence[Source] = SOURCES,
           base: DecodeConfig = DecodeConfig(max_new_tokens=48), batch_size: int = 32,
           log: Callable[[str], None] | None = None) -> dict[str, list[list[int]]]:
    """Response token ids (stop id included when one ended the row) of every source, per prompt.

    Source ``j`` decodes with seed ``base.seed + j``, so the sampled sources draw independently.
    """
    out = {}
    for j, source in enumerate(sources):
        config = source.config(base).replace(seed=base.seed + j)
        tokens = []
        for lo in range(0, len(prompts), batch_size):
            hi = min(lo + batch_size, len(prompts))
            tokens += decode(params, list(prompts[lo:hi]), config, indices=range(lo, hi)).tokens
        out[source.name] = tokens
        if log is not None:
            log(f"on-policy samples: {source.name} ({len(tokens)} prompts)")
    return out


def gold_scores(tokenizer, prompts: Sequence[str], samples: dict) -> dict[str, np.ndarray]:
    """The target gold reward ``[P]`` of every source's responses (read from their text, as `tqjax eval` does)."""
    return {name: np.asarray([world.target_reward(p, tokenizer.decode(t, skip_special_tokens=True))
                              for p, t in zip(prompts, tokens)], np.float64)
            for name, tokens in samples.items()}


def pairs(tokenizer, prompts: Sequence[str], samples: dict, gold: dict, length: int) -> dict:
    """Every two distinct responses to one prompt whose gold rewards differ, as Bradley–Terry arrays.

    Returns ``chosen_*`` / ``rejected_*`` ``tokens_NT`` and ``lengths_N`` (the layout of
    `tqjax.train.data.pair_arrays`; a reward model reads only tokens and lengths), chosen = the
    higher gold reward. Identical responses and gold ties are skipped.
    """
    names = list(samples)
    chosen, rejected = [], []
    for i, prompt in enumerate(prompts):
        seen: dict[tuple, float] = {}
        for n in names:
            seen.setdefault(tuple(samples[n][i]), float(gold[n][i]))
        for (a, ra), (b, rb) in itertools.combinations(seen.items(), 2):
            if ra == rb:
                continue
            hi, lo = (a, b) if ra > rb else (b, a)
            chosen.append((i, hi))
            rejected.append((i, lo))
    out = {}
    for side, rows in (("chosen", chosen), ("rejected", rejected)):
        seqs = prompt_response_ids(tokenizer, [prompts[i] for i, _ in rows], [r for _, r in rows])
        out[f"{side}_tokens_NT"], out[f"{side}_lengths_N"] = pad_rows(seqs, length, tokenizer.pad_token_id)
    return out


def agreement(rm: Model, tokenizer, prompts: Sequence[str], samples: dict, gold: dict) -> dict:
    """Per source, and ``"all"`` pooled: the reward model against the gold reward on those outputs.

    Each entry is `tqjax.eval.metrics.rank_agreement` of the RM scores and gold rewards of the
    source's responses (one per prompt): Spearman's ρ and the pairwise accuracy over every two
    responses whose gold rewards differ. ``"same prompt"`` is the pairwise accuracy over every two
    sources' responses to one prompt that differ in text and in gold reward, the comparison a
    decoder makes: the pairs of `pairs`, except that a response several sources gave counts once
    per source.
    """
    scores = {n: rm_scores(rm, tokenizer, prompts, samples[n]) for n in samples}
    out = {n: rank_agreement(scores[n], gold[n]) for n in samples}
    out["all"] = rank_agreement(np.concatenate(list(scores.values())), np.concatenate([gold[n] for n in samples]))
    right = total = 0
    for i in range(len(prompts)):
        for a, b in itertools.combinations(list(samples), 2):
            dg = gold[a][i] - gold[b][i]
            if dg != 0 and samples[a][i] != samples[b][i]:
                total += 1
                right += (scores[a][i] - scores[b][i]) * dg > 0
    out["same prompt"] = {"pairwise_accuracy": right / total if total else float("nan"), "pairs": total}
    return out


def concat(arrays: Sequence[dict], pad_id: int) -> dict:
    """Pair arrays of one layout joined along ``N``; ``*_NT`` arrays right-padded to the widest."""
    keys = set(arrays[0])
    for a in arrays[1:]:
        keys &= set(a)
    width = max(a[k].shape[1] for a in arrays for k in keys if k.endswith("_NT"))
    out = {}
    for k in sorted(keys):
        parts = [a[k] for a in arrays]
        if k.endswith("_NT"):
            fill = 0 if k.endswith("mask_NT") else pad_id
            parts = [np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=fill) for p in parts]
        out[k] = np.concatenate(parts)
    return out
