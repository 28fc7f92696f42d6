"""Plain decoding of one model: greedy, temperature, top-k and top-p (nucleus) sampling.

Random draws are per row: every row carries its own key, so a row's tokens do not depend on the
other rows of the batch. Keys are derived from a prompt's key by `fold_in` with the step and the
role of the draw (`step_key`, `draw_key`), never split across the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NEG_INF = -jnp.inf


def step_key(keys_B, step):
    """The keys of one decoding step: ``fold_in(prompt_key, step)`` per row (``step`` shared, or
    ``[B]``: each row's own)."""
    return jax.vmap(jax.random.fold_in, in_axes=(0, None if jnp.ndim(step) == 0 else 0))(keys_B, step)


def draw_key(keys_B, *path):
    """Derive per-row keys by folding in ``path`` (ints or traced scalars), in order."""
    for value in path:
        keys_B = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys_B, value)
    return keys_B


def categorical(keys_B, logits_BV):
    """One draw per row from softmax(logits) with that row's key."""
    return jax.vmap(jax.random.categorical)(keys_B, logits_BV).astype(jnp.int32)


def filter_logits(logits_BV, temperature, top_k: int, top_p, use_top_p: bool):
    """``logits / temperature`` with everything outside the top-k and the top-p nucleus at -inf.

    top_k (static) 0 is off; ``use_top_p`` (static) False skips the nucleus sort. The nucleus
    keeps the smallest set of highest-probability tokens whose mass reaches ``top_p`` (the most
    likely token always stays).
    """
    logits_BV = logits_BV.astype(jnp.float32) / temperature
    V = logits_BV.shape[-1]
    if 0 < top_k < V:
        kth_B1 = jax.lax.top_k(logits_BV, top_k)[0][:, -1:]
        logits_BV = jnp.where(logits_BV < kth_B1, NEG_INF, logits_BV)
    if use_top_p:
        sorted_BV = -jnp.sort(-logits_BV, axis=-1)
        probs_BV = jax.nn.softmax(sorted_BV, axis=-1)
        mass_before_BV = jnp.cumsum(probs_BV, axis=-1) - probs_BV
        keep_BV = mass_before_BV < top_p
        cutoff_B1 = jnp.min(jnp.where(keep_BV, sorted_BV, jnp.inf), axis=-1, keepdims=True)
        logits_BV = jnp.where(logits_BV < cutoff_B1, NEG_INF, logits_BV)
    return logits_BV


def sample_token(logits_BV, keys_B, knobs, plan):
    """Next token per row for plain decoding; greedy when ``plan.greedy`` (temperature 0)."""
    if plan.greedy:
        return jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)
    filtered_BV = filter_logits(logits_BV, knobs.temperature, plan.top_k, knobs.top_p, plan.nucleus)
    return categorical(keys_B, filtered_BV)


def rollout_token(logits_BV, keys_B, temperature, greedy: bool):
    """A rollout token per row: argmax when ``greedy``, else a draw at ``temperature``."""
    if greedy:
        return jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)
    return categorical(keys_B, logits_BV.astype(jnp.float32) / temperature)
