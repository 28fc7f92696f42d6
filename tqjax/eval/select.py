"""α (and best-of-N's N) chosen on validation prompts, reported on disjoint test prompts."""

from __future__ import annotations

import math
from typing import Callable, Sequence


def split_stream(draw: Callable[[int], list], n_test: int, n_val: int) -> tuple[list, list]:
    """Test prompts = the first ``n_test`` of a prompt stream; validation = the next ``n_val`` distinct
    prompts that are not test prompts. ``draw(n)`` returns the stream's first ``n`` prompts."""
    if n_test < 1 or n_val < 0:
        raise ValueError(f"need n_test >= 1 and n_val >= 0, got {n_test} and {n_val}")
    n = n_test + 2 * n_val
    while True:
        stream = draw(n)
        test, seen, val = stream[:n_test], {_key(p) for p in stream[:n_test]}, []
        for p in stream[n_test:]:
            if len(val) == n_val:
                break
            if _key(p) not in seen:
                seen.add(_key(p))
                val.append(p)
        if len(val) == n_val:
            return test, val
        if n > 64 * (n_test + n_val):
            raise ValueError(f"the prompt stream has fewer than {n_val} distinct prompts outside the test set")
        n *= 2


def split_list(prompts: Sequence, n_val: int) -> tuple[list, list]:
    """A fixed prompt list: the last ``n_val`` prompts are validation, the rest test."""
    if not 0 <= n_val < len(prompts):
        raise ValueError(f"--val-prompts must lie in [0, {len(prompts) - 1}] for {len(prompts)} prompts, got {n_val}")
    return list(prompts[:len(prompts) - n_val]), list(prompts[len(prompts) - n_val:])


def _key(prompt):
    return prompt if isinstance(prompt, str) else tuple(prompt)


def choose(validation: dict, key: str) -> float:
    """The swept value (α or N) with the highest validation mean ``key``; ties go to the lower mean
    KL, then to the smaller value. ``validation``: value -> {key: mean, "kl": mean}."""
    usable = {v: s for v, s in validation.items() if not math.isnan(s[key])}
    if not usable:
        raise ValueError(f"no swept value has a finite validation {key!r}")
    return max(usable, key=lambda v: (usable[v][key], -usable[v]["kl"], -v))


def select(validation: dict, test: dict, key: str) -> dict:
    """Per method: the value chosen on validation, its validation score, and its test summary.

    ``validation`` / ``test``: method -> value -> summary (a dict with ``key`` and ``"kl"``). The
    test figure is the one at the validation choice, whatever value would have won on test.
    """
    out = {}
    for method, per_value in validation.items():
        value = choose(per_value, key)
        out[method] = dict(value=value, validation=per_value[value][key], test=test[method][value])
    return out
