"""`DecodeState`: everything the decoding `lax.while_loop` carries from one step to the next."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DecodeState:
    step: jax.Array          # int32 tokens committed so far: a scalar shared by all rows,
                             # or [B] under continuous batching (each row its own)
    caches: dict             # role -> committed-sequence cache
    outs: dict               # role -> head output at the last committed token ([B,V] or [B])
    tokens_BN: jax.Array     # int32 generated tokens (pad after a row is done)
    done_B: jax.Array        # bool: EOS committed, or a bucket-padding row
    length_B: jax.Array      # int32 generated tokens per row, EOS included
    reward_B: jax.Array      # float32 target reward of prompt + response so far
    logp_sft_B: jax.Array    # float32 Σ log π_sft(y_t | s_t)
    kl_B: jax.Array          # float32 Σ_t KL(π_alg ‖ π_sft) (see `stats`)
    log_ratio_B: jax.Array   # float32 Σ_t log π_alg(y_t) − log π_sft(y_t)
    bad_B: jax.Array         # int32 candidates with a non-finite Q̂
    fallback_B: jax.Array    # int32 steps where no candidate was finite (SFT argmax taken)
    rank_BN: jax.Array       # int32 chosen candidate per step ([B, 0] without diagnostics)
    q_BNC: jax.Array         # float32 Q̂ per step and candidate ([B, 0, C] without diagnostics)


def init_state(caches, outs, live_B, plan) -> DecodeState:
    """The state of freshly prefilled rows under ``plan`` (a `DecodePlan`): step 0, the reward of
    the prompt where r is stepped (``outs`` holds it), per-step diagnostics for the candidate
    methods that ask."""
    B, max_new = live_B.shape[0], plan.max_new_tokens
    N = max_new if plan.diagnostics and plan.candidates else 0
    zeros_f = jnp.zeros((B,), jnp.float32)
    zeros_i = jnp.zeros((B,), jnp.int32)
    reward_B = outs["reward"].astype(jnp.float32) if "reward" in outs else zeros_f
    return DecodeState(
        step=jnp.zeros((), jnp.int32), caches=caches, outs=outs,
        tokens_BN=jnp.zeros((B, max_new), jnp.int32), done_B=~live_B, length_B=zeros_i,
        reward_B=reward_B, logp_sft_B=zeros_f, kl_B=zeros_f, log_ratio_B=zeros_f,
        bad_B=zeros_i, fallback_B=zeros_i, rank_BN=jnp.zeros((B, N), jnp.int32),
        q_BNC=jnp.zeros((B, N, plan.k), jnp.float32))
