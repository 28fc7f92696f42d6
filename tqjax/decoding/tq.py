"""One TQ* step and its special cases ``cd`` and ``args`` (docs/design.md, "Algorithm").

The value of one candidate is written for one candidate (``candidate_value``) and `vmap`-ped over
the k candidates (or, with ``candidate_chunk``, mapped over them that many at a time with
``lax.map(..., batch_size=chunk)``, so that peak memory follows the chunk, not k); inside it, one
rollout (``rollout``) is `vmap`-ped over the M rollouts. Every model's committed cache is passed to
the rollouts unmapped (``in_axes=None``): the k·M rollouts of a row read the same prefix cache, and
only their own tokens (``z, τ_1..τ_H``) and the rollout model's suffix cache are per rollout.

Per candidate ``z`` and rollout, with ``R`` the rollout model (ρ_BL for ``tq``, π_sft for ``cd``):

- ``R`` extends ``z, τ_1..τ_{H-1}`` (H tokens, one at a time: the only sequential part) to propose
  ``τ_1..τ_H``: greedy when ``rollout_temperature == 0``, else sampled at that temperature, each
  draw with key ``fold_in(fold_in(fold_in(step_key, 1 + c), m), h)``;
- the reward model then reads ``z, τ_1..τ_H`` (H+1 tokens) in one pass (``forward_suffix``:
  the same outputs as H+1 extends, with larger matmuls); the rollout's reward ``r`` is its output
  at the rollout's last token (the first stop id, or ``τ_H``), which the reward model reads as
  transformers would read ``[s, z, τ]`` (at its rightmost non-pad token, see `Model`);
- indirect transfer also needs ``r_BL``: the ``baseline_reward`` model's score of the same tokens,
  or the implicit ``β·(log ρ_BL(z,τ) − log π_sft(z,τ))`` (then π_sft reads the suffix too).

``args`` is H = 0: the value is the reward of ``[s, z]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tqjax.decoding import sampler, select as select_lib, stats
from tqjax.decoding.decode_plan import DecodePlan, Knobs
from tqjax.models.protocol import DecodeModel
from tqjax.parallel.rules import constrain_cache

PAD = 0


def _take(x_BV, token_B):
    return jnp.take_along_axis(x_BV, token_B[:, None], axis=-1)[:, 0]


def is_stop(tokens, stop: tuple[int, ...]):
    """bool, the shape of ``tokens``: the token is in the (static) stop set."""
    hit = jnp.zeros(tokens.shape, bool)
    for i in stop:
        hit = hit | (tokens == i)
    return hit


def propose(lm: DecodeModel, cache, z_B, keys_B, knobs: Knobs, plan: DecodePlan, implicit: bool,
            mesh=None) -> dict:
    """The rollout model's tokens ``toks`` ``[B, H+1]`` (``z, τ_1..τ_H``, PAD after a stop id),
    one at a time against its committed ``cache``, and for the implicit r_BL ``logrho``
    (``log ρ_BL(τ_{h+1})``, ``[B, H]``)."""
    H = plan.horizon
    c = dict(tok=z_B, done=jnp.zeros(z_B.shape, bool),
             toks=jnp.zeros(z_B.shape + (H + 1,), jnp.int32).at[:, 0].set(z_B))
    if implicit:
        c["logrho"] = jnp.zeros(z_B.shape + (max(H, 1),), jnp.float32)
    if H == 0:
        return c

    def step(h, c):
        c = dict(c)
        logits_BV, suffix = lm.extend(c["tok"], cache, c["lm"])
        c["lm"] = constrain_cache(suffix, mesh)
        c["done"] = c["done"] | is_stop(c["tok"], plan.stop_ids)
        nxt_B = sampler.rollout_token(logits_BV, sampler.draw_key(keys_B, h + 1),
                                      knobs.rollout_temperature, plan.greedy_rollouts)
        if implicit:
            c["logrho"] = c["logrho"].at[:, h].set(_take(jax.nn.log_softmax(logits_BV), nxt_B))
        c["tok"] = jnp.where(c["done"], PAD, nxt_B)
        c["toks"] = c["toks"].at[:, h + 1].set(c["tok"])
        return c

    c["lm"] = lm.init_suffix(cache, H)
    return jax.lax.fori_loop(0, H, step, c)


def implicit_log_ratio(models, caches, logp, c: dict, ended_BU):
    """``log ρ_BL − log π_sft`` ``[B]`` of a proposed rollout's real tokens (``c`` from `propose`):
    ``z``, then ``τ_{h+1}`` while none has ended (π_sft reads the rollout in one pass)."""
    toks_BU = c["toks"]
    z_B, H = toks_BU[:, 0], toks_BU.shape[1] - 1
    lr_B = _take(logp["baseline"], z_B) - _take(logp["sft"], z_B)
    if H > 0:
        sft_BHV = jax.nn.log_softmax(models["sft"].forward_suffix(toks_BU[:, :H], caches["sft"]))
        logpi_BH = jnp.take_along_axis(sft_BHV, toks_BU[:, 1:, None], axis=-1)[..., 0]
        gap_BH = jnp.where(ended_BU[:, :H], 0.0, c["logrho"] - logpi_BH)
        lr_B = lr_B + jnp.sum(gap_BH, axis=1)
    return lr_B


def combine(r_M, logw_M, plan: DecodePlan):
    """Q̂ from the rewards ``r`` and log-weights ``(r − r_BL)/β`` of a candidate's M rollouts
    (axis 0): their mean (direct), the self-normalised or the unnormalised weighted mean."""
    if not plan.indirect:
        return jnp.mean(r_M, axis=0)
    if plan.weights == "normalized":
        return jnp.sum(jax.nn.softmax(logw_M, axis=0) * r_M, axis=0)
    return jnp.mean(jnp.exp(logw_M) * r_M, axis=0)


def candidate_values(models: dict[str, DecodeModel], caches, logp, cand_BC, step_keys_B,
                     knobs: Knobs, plan: DecodePlan, mesh=None):
    """Q̂ of every candidate, ``[B, C]`` float32 (NaN/inf pass through; `select` handles them).

    ``models`` and ``caches`` map roles (``sft``, ``baseline``, ``reward``, ``baseline_reward``)
    to models and their committed caches; ``logp`` maps lm roles to ``[B, V]`` next-token
    log-probs at the committed state.
    """
    H, M = plan.horizon, plan.rollouts
    role = plan.rollout or plan.proposal      # ARGS (H = 0) proposes no rollout token
    lm, reward = models[role], models["reward"]
    indirect, implicit = plan.indirect, plan.implicit_rbl
    rbl = None if implicit or not indirect else models["baseline_reward"]
    beta = knobs.beta

    def is_eos(tok):
        return is_stop(tok, plan.stop_ids)

    def rollout(z_B, keys_B):
        # Only the rollout model is sequential. The models that read the rollout (reward, r_BL,
        # π_sft for the implicit r_BL) take all its tokens in one pass: the same numbers as
        # token-by-token extends, with (H+1)-times larger matmuls.
        c = propose(lm, caches[role], z_B, keys_B, knobs, plan, implicit, mesh)
        toks_BU = c["toks"]
        ended_BU = jnp.cumsum(is_eos(toks_BU), axis=1) > 0      # an EOS at or before u
        last_B = jnp.sum(~ended_BU[:, :H], axis=1)              # the first EOS, else τ_H

        def score(model, name):
            out_BU = model.forward_suffix(toks_BU, caches[name])
            return _take(out_BU, last_B)

        r_B = score(reward, "reward")
        if not indirect:
            return r_B, r_B
        if not implicit:
            return r_B, (r_B - score(rbl, "baseline_reward")) / beta
        return r_B, r_B / beta - implicit_log_ratio(models, caches, logp, c, ended_BU)

    def candidate_value(z_B, index):
        keys_MB = jax.vmap(lambda m: sampler.draw_key(step_keys_B, 1 + index, m))(jnp.arange(M))
        if M == 1:   # no size-1 vmap: XLA kept extra copies of the suffix caches for it
            r_MB, logw_MB = jax.tree.map(lambda x: x[None], rollout(z_B, keys_MB[0]))
        else:
            z_MB = jnp.broadcast_to(z_B, (M,) + z_B.shape)
            r_MB, logw_MB = jax.vmap(rollout)(z_MB, keys_MB)
        return combine(r_MB, logw_MB, plan)

    C = cand_BC.shape[1]
    q_CB = over_candidates(lambda args: candidate_value(*args), (cand_BC.T, jnp.arange(C)),
                           plan.candidate_chunk)
    return q_CB.T


def over_candidates(fn, xs, chunk: int):
    """``fn`` over the leading (candidate) axis of ``xs``: one `vmap`, or with ``chunk``
    (0 < chunk < size) ``lax.map`` over chunks of that many, so that peak memory follows the chunk,
    not k; the same numbers either way."""
    size = jax.tree.leaves(xs)[0].shape[0]
    if chunk == 0 or chunk >= size:
        return jax.vmap(fn)(xs)
    return jax.lax.map(fn, xs, batch_size=chunk)


def lm_logp(outs, plan: DecodePlan) -> dict:
    """role -> float32 next-token log-probabilities ``[B, V]`` of the plan's language models."""
    return {role: jax.nn.log_softmax(outs[role].astype(jnp.float32), axis=-1) for role in plan.lms}


def tq_step(models: dict[str, DecodeModel], caches, outs, step_keys_B, knobs: Knobs,
            plan: DecodePlan, mesh=None):
    """Choose this step's token per row. Returns ``(token_B, info)``.

    ``info``: ``kl_B``, ``log_ratio_B``, ``bad_B`` (candidates with non-finite Q̂),
    ``fallback_B``, ``rank_B``, ``q_BC``.
    """
    logp = lm_logp(outs, plan)
    cand_BC, prior_BC = select_lib.candidates(logp[plan.proposal], plan.k)
    q_BC = candidate_values(models, caches, logp, cand_BC, step_keys_B, knobs, plan, mesh)
    return choose(cand_BC, prior_BC, q_BC, logp, step_keys_B, knobs, plan)


def choose(cand_BC, prior_BC, q_BC, logp, step_keys_B, knobs: Knobs, plan: DecodePlan):
    """The token per row from the candidates' prior and Q̂ (step 4), with its ``info``."""
    sel = select_lib.select(cand_BC, prior_BC, q_BC, logp["sft"], knobs.alpha,
                            sampler.draw_key(step_keys_B, 0), plan.select == "greedy")
    logp_sft_BC = jnp.take_along_axis(logp["sft"], cand_BC, axis=-1)
    kl_B, ratio_B = stats.candidate_kl(sel.score_BC, logp_sft_BC, sel.rank_B, sel.fallback_B)
    info = dict(kl_B=kl_B, log_ratio_B=ratio_B, bad_B=jnp.sum(sel.bad_BC, axis=-1, dtype=jnp.int32),
                fallback_B=sel.fallback_B, rank_B=sel.rank_B, q_BC=q_BC)
    return sel.token_B, info
