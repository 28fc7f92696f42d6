"""`decode_arrays`: the jitted entry point of the engine, one compiled program per `DecodePlan`.

Inputs are arrays only (the API layer tokenises, pads and buckets); the models travel as a pytree
argument (their parameters are inputs, never constants baked into the program).
"""

from __future__ import annotations

import functools

import jax

from tqjax.decoding import bon, loop
from tqjax.parallel.rules import constrain_batch


def _decode_arrays(params, tokens_BT, start_B, keys_B, live_B, knobs, plan, mesh=None) -> dict:
    if plan.method == "bon":
        out = bon.best_of_n(params, tokens_BT, start_B, keys_B, live_B, knobs, plan, mesh)
    else:
        out = _outputs(loop.generate(params, tokens_BT, start_B, keys_B, live_B, knobs, plan, mesh))
    # the outputs' layout, stated: every per-prompt array split over "data", the step count replicated
    return {name: constrain_batch(x, mesh) for name, x in out.items()}


def _outputs(s) -> dict:
    return dict(tokens_BN=s.tokens_BN, length_B=s.length_B, reward_B=s.reward_B,
                logp_sft_B=s.logp_sft_B, kl_B=s.kl_B, log_ratio_B=s.log_ratio_B, bad_B=s.bad_B,
                fallback_B=s.fallback_B, steps=s.step, rank_BN=s.rank_BN, q_BNC=s.q_BNC)


@functools.partial(jax.jit, static_argnames=("plan", "mesh"))
def decode_arrays(params, tokens_BT, start_B, keys_B, live_B, knobs, plan, mesh=None) -> dict:
    """Decode a left-padded, bucketed batch.

    params: pytree with ``sft``, ``baseline``, ``reward``, ``baseline_reward`` (None where unused);
    tokens_BT int32; start_B int32 first real slot; keys_B typed PRNG keys, one per row; live_B
    bool (False for padding rows); knobs: `Knobs` (traced α, β, temperatures, top-p); plan: the
    `DecodePlan` (static); mesh: the ``("data", "model")`` mesh the arrays are placed on (static),
    whose layout the caches, the rollout suffixes and the outputs keep, or None. Returns
    ``tokens_BN`` (pad after EOS), ``length_B``, ``reward_B``, ``logp_sft_B``, ``kl_B``,
    ``log_ratio_B``, ``bad_B``, ``fallback_B``, ``steps``, and with ``plan.diagnostics``
    ``rank_BN`` and ``q_BNC`` (``bon``: the kept index and all N rewards).
    """
    return _decode_arrays(params, tokens_BT, start_B, keys_B, live_B, knobs, plan, mesh)
