"""The whole decode as one program: prefill every model, then a `lax.while_loop` over steps.

Each step chooses one token per row (`tq.tq_step` for ``tq``/``cd``/``args``, `plain_step` for
``sft``/``baseline``/``bon`` samples), then commits it to every model's cache with ``append``: the
committed prefix is never re-encoded. Rows stop at any id of the stop set (unless ``ignore_eos``) or after
``max_new_tokens``; a finished row appends padding and nothing about it changes any more. The loop
exits as soon as every row is done.

A plain decode of one batch (``sft``, ``baseline``, best-of-N samples: `generate`) needs the reward
of each finished response only, so its reward model is not stepped with the others: it prefills
the prompts and reads every whole response once, after the loop (`read_responses`, one
``forward_suffix`` of large matmuls instead of one token per step). Under continuous batching
(`tqjax.decoding.continuous`) rows finish at different steps, and the reward model is stepped as
every other model.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from tqjax.decoding import sampler, stats, tq
from tqjax.decoding.decode_plan import DecodePlan, Knobs
from tqjax.decoding.state import DecodeState, init_state
from tqjax.models.protocol import DecodeModel, for_loops
from tqjax.parallel.rules import constrain_cache

def plain_step(outs, step_keys_B, knobs, plan: DecodePlan):
    role = plan.proposal
    token_B = sampler.sample_token(outs[role], sampler.draw_key(step_keys_B, 0), knobs, plan)
    if role == "sft":
        zeros = jnp.zeros(token_B.shape, jnp.float32)
        kl_B, ratio_B = zeros, zeros
    else:
        kl_B, ratio_B = stats.vocab_kl(jax.nn.log_softmax(outs[role].astype(jnp.float32)),
                                       jax.nn.log_softmax(outs["sft"].astype(jnp.float32)),
                                       token_B)
    return token_B, dict(kl_B=kl_B, log_ratio_B=ratio_B)


def prefill(models: dict[str, DecodeModel], tokens_BT, start_B, slots: int, mesh=None):
    """Every model's committed cache of the prompts (``slots`` positions) and its head output at
    the last prompt token: ``(caches, outs)``, the caches laid out on ``mesh`` by the rules."""
    caches, outs = {}, {}
    for role, model in models.items():
        outs[role], cache = model.prefill(tokens_BT, start_B, model.init_cache(tokens_BT.shape[0], slots))
        caches[role] = constrain_cache(cache, mesh)
    return caches, outs


def commit(models: dict[str, DecodeModel], caches, token_B, mesh=None):
    """Append ``token_B`` to every model's committed cache: ``(caches, outs)``, the caches laid
    out on ``mesh`` by the rules."""
    new_caches, new_outs = {}, {}
    for role, model in models.items():
        new_outs[role], cache = model.append(token_B, caches[role])
        new_caches[role] = constrain_cache(cache, mesh)
    return new_caches, new_outs


def empty_rows(models: dict[str, DecodeModel], rows: int, slots: int, mesh=None):
    """``rows`` empty rows of every model, for rows that start at different times (continuous
    batching): caches of ``slots`` positions with per-row write positions, zero head outputs."""
    caches, outs = {}, {}
    for role, model in models.items():
        cache = model.init_cache(rows, slots)
        caches[role] = constrain_cache(model.insert(cache, cache, jnp.arange(rows)), mesh)
        shape = (rows, model.vocab_size) if model.kind == "lm" else (rows,)
        outs[role] = jnp.zeros(shape, jnp.float32)
    return caches, outs


def insert_rows(models: dict[str, DecodeModel], caches, outs, caches_R, outs_R, slots_R, mesh=None):
    """Put ``R`` prefilled rows (``caches_R``, ``outs_R``) into rows ``slots_R`` of every model's
    ``caches`` and ``outs`` (a slot past the last row is dropped): ``(caches, outs)``."""
    put = lambda old, new: old.at[slots_R].set(new.astype(old.dtype), mode="drop")
    return ({role: constrain_cache(model.insert(caches[role], caches_R[role], slots_R), mesh)
             for role, model in models.items()},
            {role: put(outs[role], outs_R[role]) for role in models})


def loop_models(params, plan: DecodePlan, mesh=None, roles=None) -> dict[str, DecodeModel]:
    """The models the plan runs, as the loops hold them (`protocol.for_loops`, done once, before
    the loops) in the plan's layer layout: ``auto`` unrolls shallow transformers on one device and
    scans on a mesh, which keeps the compiled program's memory as the planner models it."""
    return {role: for_loops(getattr(params, role), plan.layers, mesh is None)
            for role in (plan.active if roles is None else roles)}


def read_responses(model: DecodeModel, cache, prompt_out_B, tokens_BN, length_B):
    """``model``'s head output after every row's ``length_B`` response tokens, as ``append`` after
    each of them would give it: the responses read in one ``forward_suffix`` against the prompts'
    ``cache``; a row with no response keeps ``prompt_out_B``, the output at its prompt."""
    scores_BN = model.forward_suffix(tokens_BN, cache)
    last_B = jnp.take_along_axis(scores_BN, jnp.maximum(length_B - 1, 0)[:, None], axis=1)[:, 0]
    return jnp.where(length_B > 0, last_B, prompt_out_B)


def generate(params, tokens_BT, start_B, keys_B, live_B, knobs: Knobs, plan: DecodePlan,
             mesh=None) -> DecodeState:
    """Decode a left-padded batch. Not jitted itself: `tqjax.decoding.engine.decode_arrays` is.

    tokens_BT: int32 left-padded prompts; start_B: first real slot per row; keys_B: one typed PRNG
    key per row; live_B: False for bucket-padding rows; knobs: the traced `Knobs`; plan: the
    static `DecodePlan`; mesh: the device mesh (static) whose layout the caches keep, or None.
    Returns the final `DecodeState`.
    """
    B, T = tokens_BT.shape
    N = plan.max_new_tokens
    models = loop_models(params, plan, mesh)
    reader = {"reward": models.pop("reward")} if not plan.candidates and "reward" in models else {}

    caches, outs = prefill(models, tokens_BT, start_B, T + N, mesh)
    read_caches, read_outs = prefill(reader, tokens_BT, start_B, T, mesh)     # the prompts only
    state = init_state(caches, outs, live_B, plan)

    def cond(s: DecodeState):
        return (s.step < N) & ~jnp.all(s.done_B)

    state = jax.lax.while_loop(cond, step_fn(models, keys_B, knobs, plan, mesh), state)
    if not reader:
        return state
    reward_B = read_responses(reader["reward"], read_caches["reward"], read_outs["reward"],
                              state.tokens_BN, state.length_B)
    return dataclasses.replace(state, reward_B=reward_B.astype(jnp.float32))


def step_fn(models: dict[str, DecodeModel], keys_B, knobs: Knobs, plan: DecodePlan, mesh=None):
    """One decoding step, `DecodeState` -> `DecodeState`: choose a token per live row, commit it
    to every model's cache, accumulate the statistics.

    ``s.step`` is a scalar when the rows started together (`generate`), or ``[B]``, each row's
    own step, under continuous batching (`tqjax.decoding.continuous`): a row's keys, its token
    slot and its budget then follow its own step, and a row that reaches ``max_new_tokens`` is
    done.
    """
    N = plan.max_new_tokens
    candidate_method = plan.candidates
    per_row = lambda s: jnp.ndim(s.step) == 1

    def put(x_BN, step, value_B):     # x[b, step_b] = value[b] (trailing axes ride along)
        if jnp.ndim(step) == 0:
            return x_BN.at[:, step].set(value_B)
        return x_BN.at[jnp.arange(x_BN.shape[0]), step].set(value_B, mode="drop")

    def body(s: DecodeState):
        step_keys_B = sampler.step_key(keys_B, s.step)
        if candidate_method:
            token_B, info = tq.tq_step(models, s.caches, s.outs, step_keys_B, knobs, plan, mesh)
        else:
            token_B, info = plain_step(s.outs, step_keys_B, knobs, plan)
        live_B = ~s.done_B
        token_B = jnp.where(live_B, token_B, tq.PAD)
        logp_sft_B = jnp.take_along_axis(jax.nn.log_softmax(s.outs["sft"].astype(jnp.float32)),
                                         token_B[:, None], axis=-1)[:, 0]
        new_caches, new_outs = commit(models, s.caches, token_B, mesh)

        def acc(total, value):
            return total + jnp.where(live_B, value, 0).astype(total.dtype)

        changes = dict(
            step=s.step + live_B.astype(jnp.int32) if per_row(s) else s.step + 1,
            caches=new_caches, outs=new_outs,
            tokens_BN=put(s.tokens_BN, s.step, token_B),
            length_B=acc(s.length_B, 1),
            logp_sft_B=acc(s.logp_sft_B, logp_sft_B),
            kl_B=acc(s.kl_B, info["kl_B"]), log_ratio_B=acc(s.log_ratio_B, info["log_ratio_B"]))
        if "reward" in models:
            changes["reward_B"] = jnp.where(live_B, new_outs["reward"].astype(jnp.float32),
                                            s.reward_B)
        if candidate_method:
            changes["bad_B"] = acc(s.bad_B, info["bad_B"])
            changes["fallback_B"] = acc(s.fallback_B, info["fallback_B"])
            if s.rank_BN.shape[1]:
                changes["rank_BN"] = put(s.rank_BN, s.step, jnp.where(live_B, info["rank_B"], -1))
                changes["q_BNC"] = put(s.q_BNC, s.step,
                                       jnp.where(live_B[:, None], info["q_BC"], jnp.nan))
        done_B = s.done_B
        if not plan.ignore_eos:     # rollouts stop at the stop ids even with ignore_eos
            done_B = done_B | (live_B & tq.is_stop(token_B, plan.stop_ids))
        if per_row(s):
            done_B = done_B | (changes["step"] >= N)
        changes["done_B"] = done_B
        return dataclasses.replace(s, **changes)

    return body
