"""Best-of-N: N full samples per prompt from π_sft (or ρ_BL with ``proposal="baseline"``), keep
the one with the highest target reward.

The N samples of a prompt are N rows of one plain decode (`loop.generate`); sample ``j`` of a
prompt draws with key ``fold_in(prompt_key, j)``. A sample whose reward is NaN or ±inf is never
kept unless all N are, then sample 0 is kept; the non-finite rewards are counted in ``bad_B``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tqjax.decoding import loop


def best_of_n(params, tokens_BT, start_B, keys_B, live_B, knobs, plan, mesh=None) -> dict:
    """Arrays of the kept samples (see `engine.decode_arrays`), plus ``rewards_BN``: all N."""
    B, n = tokens_BT.shape[0], plan.n
    keys_Bn = jax.vmap(lambda key: jax.vmap(lambda j: jax.random.fold_in(key, j))(jnp.arange(n)))(keys_B)
    rep = lambda x: jnp.repeat(x, n, axis=0)
    state = loop.generate(params, rep(tokens_BT), rep(start_B), keys_Bn.reshape(B * n),
                          rep(live_B), knobs, plan, mesh)
    rewards_Bn = state.reward_B.reshape(B, n)
    finite_Bn = jnp.isfinite(rewards_Bn)
    best_B = jnp.argmax(jnp.where(finite_Bn, rewards_Bn, -jnp.inf), axis=-1)
    best_B = jnp.where(jnp.any(finite_Bn, axis=-1), best_B, 0)

    def pick(x):
        x = x.reshape((B, n) + x.shape[1:])
        return jnp.take_along_axis(x, best_B.reshape((B, 1) + (1,) * (x.ndim - 2)), axis=1)[:, 0]

    return dict(tokens_BN=pick(state.tokens_BN), length_B=pick(state.length_B),
                reward_B=pick(state.reward_B), logp_sft_B=pick(state.logp_sft_B),
                kl_B=pick(state.kl_B), log_ratio_B=pick(state.log_ratio_B),
                bad_B=jnp.sum(~finite_Bn, axis=-1, dtype=jnp.int32),
                fallback_B=(~jnp.any(finite_Bn, axis=-1)).astype(jnp.int32),
                steps=state.step, rank_BN=best_B[:, None].astype(jnp.int32),
                q_BNC=rewards_Bn[:, None, :], rewards_Bn=rewards_Bn)
