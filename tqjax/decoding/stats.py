"""What is reported per step: KL(π_alg ‖ π_sft) and log π_alg(y) − log π_sft(y).

For the candidate methods (``tq``, ``cd``, ``args``), exactly:

- ``π_alg(z) = softmax(score)(z)`` over the k candidates (the tilted policy the step targets,
  whether the token is then taken greedily or sampled; candidates with score -inf have mass 0);
- ``π_sft`` is the SFT distribution renormalised over the same k candidates;
- ``kl = Σ_z π_alg(z) (log π_alg(z) − log π_sft(z))`` and
  ``log_ratio = log π_alg(y) − log π_sft(y)`` for the committed token ``y``, so that under
  ``select="sample"`` ``E[log_ratio] = kl``.

A fallback step (no finite candidate) commits the SFT argmax and counts 0 for both. For plain
decoding (``sft``, ``baseline``, and the kept sample of ``bon``), π_alg is the decoded model's own
distribution at temperature 1 over the whole vocabulary (0 for the SFT model itself).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def candidate_kl(score_BC, logp_sft_BC, rank_B, fallback_B):
    """``(kl_B, log_ratio_B)`` of softmax(score) against π_sft renormalised over the candidates."""
    safe_BC = jnp.where(fallback_B[:, None], 0.0, score_BC)
    logp_alg_BC = jax.nn.log_softmax(safe_BC, axis=-1)
    logp_ref_BC = jax.nn.log_softmax(logp_sft_BC, axis=-1)
    p_alg_BC = jnp.exp(logp_alg_BC)
    kl_B = jnp.sum(jnp.where(p_alg_BC > 0, p_alg_BC * (logp_alg_BC - logp_ref_BC), 0.0), axis=-1)
    idx_B1 = jnp.maximum(rank_B, 0)[:, None]
    ratio_B = (jnp.take_along_axis(logp_alg_BC, idx_B1, axis=-1)
               - jnp.take_along_axis(logp_ref_BC, idx_B1, axis=-1))[:, 0]
    return jnp.where(fallback_B, 0.0, kl_B), jnp.where(fallback_B, 0.0, ratio_B)


def vocab_kl(logp_alg_BV, logp_sft_BV, token_B):
    """``(kl_B, log_ratio_B)`` over the whole vocabulary."""
    p_alg_BV = jnp.exp(logp_alg_BV)
    kl_B = jnp.sum(jnp.where(p_alg_BV > 0, p_alg_BV * (logp_alg_BV - logp_sft_BV), 0.0), axis=-1)
    ratio_B = (jnp.take_along_axis(logp_alg_BV, token_B[:, None], axis=-1)
               - jnp.take_along_axis(logp_sft_BV, token_B[:, None], axis=-1))[:, 0]
    return kl_B, ratio_B
