"""Edited pairs for the world recipe's reward models: a sampled review against the same review
with one edit, ordered by a gold reward. Reward-hack pairs (`hack_pairs`) show how an additive
gold reward reacts to gaming; minimal pairs (`contrast_pairs`) isolate negation and word strength.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tqjax import world


def _perturb(rng: np.random.Generator, response: str, max_words: int) -> str | None:
    """One reward hack applied to ``response``: repetition, exclamation runs, padding or cutting."""
    ws = response.split()[:-1]  # drop the final <eos>
    op = int(rng.integers(4))
    if op == 0:  # repeat one word in place
        i = int(rng.integers(len(ws)))
        ws = ws[:i] + [ws[i]] * int(rng.integers(2, 5)) + ws[i + 1:]
    elif op == 1:  # exclamation marks
        ws = ws + ["!"] * int(rng.integers(1, 6))
    elif op == 2:  # say it all twice
        ws = ws + ws
    else:  # stop early
        if len(ws) < 3:
            return None
        ws = ws[:int(rng.integers(1, len(ws)))]
    ws = ws[:max_words]
    return " ".join(ws + [world.generator.EOS])


def hack_pairs(n: int, reward_fn: Callable[[str, str], float], seed: int,
               max_words: int = 44) -> list[world.Pair]:
    """``n`` pairs (review, the same review with a reward hack), ordered by ``reward_fn``.

    The hacks (repeating a word, runs of "!", repeating the whole response, stopping early) are
    the ways an additive gold reward can be gamed; the pairs teach a reward model how the gold
    reward reacts to them. Ties are skipped. A pure function of ``seed``.
    """
    return _edited_pairs(n, reward_fn, seed, lambda rng, ex: _perturb(rng, ex.response, max_words))


_SENTIMENT = tuple(sorted(set(world.TARGET.sentiment()) | set(world.BASELINE.sentiment())))
_ADJECTIVES = tuple(sorted(set(world.generator.STRONG_POSITIVE + world.generator.MILD_POSITIVE
                               + world.generator.STRONG_NEGATIVE + world.generator.MILD_NEGATIVE
                               + tuple(w for d in world.generator.DOMAINS for w in d.good + d.bad))))


def _contrast(rng: np.random.Generator, prompt: str, response: str, max_words: int) -> str | None:
    """``response`` with one minimal, meaning-changing edit: a negation toggled or a word swapped.

    Negation: "was X" <-> "was not X" for a sentiment word X (one place, or every place at once);
    swap: one sentiment adjective replaced by another (of any strength or sign). The word before
    the response's first word is the prompt's last word, as in the gold rewards.
    """
    ws = response.split()[:-1]  # drop the final <eos>
    prev = (prompt.split() or [""])[-1:]
    before = lambda i: ws[i - 1] if i > 0 else prev[0]
    senti = [i for i, w in enumerate(ws) if w in _SENTIMENT]
    if not senti:
        return None
    if rng.random() < 0.6:  # toggle negation
        sites = [i for i in senti if before(i) in ("was", "were", "not")]
        if not sites:
            return None
        chosen = sites if rng.random() < 0.3 else [sites[int(rng.integers(len(sites)))]]
        for i in sorted(chosen, reverse=True):
            if before(i) == "not":
                if i == 0:
                    return None  # the "not" is the prompt's
                del ws[i - 1]
            else:
                ws.insert(i, "not")
    else:  # swap one sentiment adjective for another
        sites = [i for i in senti if ws[i] in _ADJECTIVES]
        if not sites:
            return None
        i = sites[int(rng.integers(len(sites)))]
        ws[i] = _ADJECTIVES[int(rng.integers(len(_ADJECTIVES)))]
    if len(ws) > max_words:
        return None
    return " ".join(ws + [world.generator.EOS])


def contrast_pairs(n: int, reward_fn: Callable[[str, str], float], seed: int,
                   max_words: int = 44) -> list[world.Pair]:
    """``n`` minimal pairs (review, the same review with one clause's meaning changed), ordered by ``reward_fn``.

    The edits (see `_contrast`) toggle a negation ("was bad" / "was not bad") or swap one
    sentiment word, so the two responses differ in one or a few words and only the gold reward's
    reading of those words decides the order. They teach a reward model negation and word
    strength, which pairs of independent responses leave confounded with everything else. Ties
    are skipped. A pure function of ``seed``.
    """
    return _edited_pairs(n, reward_fn, seed, lambda rng, ex: _contrast(rng, ex.prompt, ex.response, max_words))


def _edited_pairs(n: int, reward_fn, seed: int, edit) -> list[world.Pair]:
    """``n`` pairs (a sampled review, ``edit(rng, example)`` of it), ordered by ``reward_fn``; ties skipped."""
    rng = np.random.default_rng(seed)
    out: list[world.Pair] = []
    while len(out) < n:
        for ex in world.sample_examples(n, int(rng.integers(2**31))):
            edited = edit(rng, ex)
            if edited is None or edited == ex.response:
                continue
            a, b = ex.response, edited
            ra, rb = float(reward_fn(ex.prompt, a)), float(reward_fn(ex.prompt, b))
            if ra == rb:
                continue
            if ra < rb:
                a, b, ra, rb = b, a, rb, ra
            out.append(world.Pair(ex.prompt, a, b, ra, rb))
            if len(out) == n:
                break
    return out
