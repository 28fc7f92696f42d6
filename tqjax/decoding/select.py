"""Candidates and the token policy of one TQ* step (docs/design.md, "Algorithm", steps 1 and 4).

``score(z) = log prior(z) + α·Q̂(z)`` over the top-k candidates ``z``. A candidate whose Q̂ (or
score) is NaN or ±inf scores -inf. A row whose every candidate does falls back to the SFT argmax
over the whole vocabulary; both events are counted by the caller.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from tqjax.decoding import sampler


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Selection:
    token_B: jax.Array       # int32 chosen token
    rank_B: jax.Array        # int32 index of the chosen candidate, -1 on fallback
    score_BC: jax.Array      # float32 scores, -inf for bad candidates
    bad_BC: jax.Array        # bool, candidate's Q̂ or score was not finite
    fallback_B: jax.Array    # bool, no finite candidate: the SFT argmax was taken


def candidates(logp_prior_BV, k: int):
    """Top-k of the prior: ``(cand_BC int32, prior_BC float32)``, best first."""
    prior_BC, cand_BC = jax.lax.top_k(logp_prior_BV, k)
    return cand_BC.astype(jnp.int32), prior_BC


def select(cand_BC, prior_BC, q_BC, logp_sft_BV, alpha, keys_B, greedy: bool) -> Selection:
    """Pick one candidate per row: argmax of the score, or a draw from softmax(score)."""
    raw_BC = prior_BC + alpha * q_BC
    bad_BC = ~jnp.isfinite(q_BC)
    score_BC = jnp.where(bad_BC | jnp.isnan(raw_BC) | (raw_BC == jnp.inf), -jnp.inf, raw_BC)
    fallback_B = jnp.all(score_BC == -jnp.inf, axis=-1)
    if greedy:
        rank_B = jnp.argmax(score_BC, axis=-1).astype(jnp.int32)
    else:
        safe_BC = jnp.where(fallback_B[:, None], 0.0, score_BC)
        rank_B = sampler.categorical(keys_B, safe_BC)
    chosen_B = jnp.take_along_axis(cand_BC, rank_B[:, None], axis=-1)[:, 0]
    token_B = jnp.where(fallback_B, jnp.argmax(logp_sft_BV, axis=-1).astype(jnp.int32), chosen_B)
    return Selection(token_B, jnp.where(fallback_B, -1, rank_B), score_BC, bad_BC, fallback_B)
