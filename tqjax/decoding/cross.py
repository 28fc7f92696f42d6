"""Decoding when a reader (``reward``, ``baseline_reward``) has its own tokenizer.

Re-tokenising cannot happen inside an XLA program, so a step is two jitted programs with the text
round trip (`tqjax.decoding.text_reader`) between them, and everything else stays fused:

1. `propose`: the top-k candidates of every row and the k·M rollouts of each, for the whole
   batch (the same `tq.propose` as the fused step, with the same keys), plus the implicit
   ``log ρ_BL − log π_sft`` where indirect transfer uses it;
2. host: every rollout ``[committed, z, τ]`` (up to its first stop id) is decoded with the SFT
   tokenizer and re-encoded with each reader's, in one batched call of each tokenizer;
3. `score_commit`: each reader reads every encoding, after a prefix cache of its row, in one
   pass (`forward_suffix`), in fixed buckets; then the values, the selection (`tq.choose`) and
   the commit to the SFT/baseline caches (`loop.commit`), as the fused step does them. The prefix cache holds ids
   that every encoding of the row starts with, compared id by id (so it is exactly what a full
   re-encode computes, whatever the tokenizer does at the seam); it is kept across steps while
   that holds and reading the longer suffixes costs fewer reader positions than prefilling the
   rows' new shared prefix, else it is prefilled again (`prefill_reader`, `_Prefixes`).

The host loop that runs these steps over slots, refilling a finished prompt's slot with the next
prompt, is `tqjax.decoding.cross_rows`. The committed response's reward (``out.rewards``), best-of-N's samples and the plain methods'
reward go through the same round trip (`score_texts`; for the last two, `tqjax.api.cross.TextScorer`
reads the fused engine's responses). Host seconds per phase are reported in
``diagnostics["cross_seconds"]``.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from tqjax.decoding import loop, sampler, tq
from tqjax.decoding import select as select_lib
from tqjax.decoding.decode_plan import DecodePlan
from tqjax.decoding.text_reader import (TextCodec, bucket, layout, prefix_arrays, shared_prefix,
                                         suffix_arrays)


def held_models(params, plan: DecodePlan, mesh=None, lms: bool = True):
    """``(lms, readers)``: the language models (none unless ``lms``) and the readers, as the loops
    hold them (`loop.loop_models`)."""
    return (loop.loop_models(params, plan, mesh, plan.lms if lms else ()),
            loop.loop_models(params, plan, mesh, plan.reward_models))


@functools.partial(jax.jit, static_argnames=("rows", "slots", "mesh"))
def empty(lms, rows: int, slots: int, mesh=None):
    """``rows`` empty slots of every language model (`loop.empty_rows`)."""
    return loop.empty_rows(lms, rows, slots, mesh)


@functools.partial(jax.jit, static_argnames=("slots", "mesh"), donate_argnums=(1, 2))
def insert(lms, caches, outs, tokens_RT, start_R, slots_R, slots: int, mesh=None):
    """Prefill ``R`` left-padded prompts and put them into rows ``slots_R`` (past the last row:
    dropped) of the language models' ``caches`` and ``outs``."""
    caches_R, outs_R = loop.prefill(lms, tokens_RT, start_R, slots, mesh)
    return loop.insert_rows(lms, caches, outs, caches_R, outs_R, slots_R, mesh)


@functools.partial(jax.jit, static_argnames=("plan",))
def propose(lms, caches, outs, step_keys_B, knobs, plan: DecodePlan):
    """Candidates ``[B, C]``, their prior, rollout tokens ``[C, M, B, H+1]``, each rollout's last
    real index ``[C, M, B]`` and the implicit log-ratio ``[C, M, B]`` (zeros unless used)."""
    H, M = plan.horizon, plan.rollouts
    implicit = plan.implicit_rbl
    role = plan.rollout or plan.proposal
    logp = tq.lm_logp(outs, plan)
    cand_BC, prior_BC = select_lib.candidates(logp[plan.proposal], plan.k)

    def roll(z_B, keys_B):
        c = tq.propose(lms[role], caches[role], z_B, keys_B, knobs, plan, implicit)
        ended_BU = jnp.cumsum(tq.is_stop(c["toks"], plan.stop_ids), axis=1) > 0
        last_B = jnp.sum(~ended_BU[:, :H], axis=1)
        lr_B = (tq.implicit_log_ratio(lms, caches, logp, c, ended_BU) if implicit
                else jnp.zeros(z_B.shape, jnp.float32))
        return c["toks"], last_B, lr_B

    def one(z_B, index):
        keys_MB = jax.vmap(lambda m: sampler.draw_key(step_keys_B, 1 + index, m))(jnp.arange(M))
        if M == 1:
            return jax.tree.map(lambda x: x[None], roll(z_B, keys_MB[0]))
        return jax.vmap(roll)(jnp.broadcast_to(z_B, (M,) + z_B.shape), keys_MB)

    toks, last, lr = tq.over_candidates(lambda args: one(*args), (cand_BC.T, jnp.arange(plan.k)),
                                      plan.candidate_chunk)
    return cand_BC, prior_BC, toks, last, lr


def _read(model, cache, suffix_RBU, last_RB, chunk: int = 0):
    """The reader's score ``[R, B]`` of each suffix after its row's prefix ``cache``, read at
    the suffix's last id; ``chunk``: suffixes read at once (0: all R)."""
    out_RBU = tq.over_candidates(lambda x: model.forward_suffix(x, cache), suffix_RBU, chunk)
    return jnp.take_along_axis(out_RBU, last_RB[..., None], axis=-1)[..., 0].astype(jnp.float32)


@jax.jit
def prefill_reader(model, prefix_BP, start_B):
    """A reader's cache of the left-padded prefixes ``prefix_BP``."""
    return model.prefill(prefix_BP, start_B, model.init_cache(*prefix_BP.shape))[1]


@jax.jit
def read_texts(model, prefix_BP, start_B, suffix_RBU, last_RB):
    """Scores ``[R, B]`` of the `text_reader.layout` arrays: prefix prefilled, suffixes read."""
    return _read(model, model.prefill(prefix_BP, start_B, model.init_cache(*prefix_BP.shape))[1],
                 suffix_RBU, last_RB)


@functools.partial(jax.jit, static_argnames=("plan", "mesh"), donate_argnums=(2,))
def score_commit(lms, readers, caches, outs, cand_BC, prior_BC, lr_CMB, reader_caches, reads,
                 step_keys_B, live_B, knobs, plan: DecodePlan, mesh=None):
    C, M, B = lr_CMB.shape
    chunk = plan.candidate_chunk * M       # the k·M rollouts are read candidate by candidate
    r = {role: _read(readers[role], reader_caches[role], *reads[role], chunk=chunk).reshape(C, M, B)
         for role in readers}
    r_CMB = r["reward"]
    if not plan.indirect:
        logw_CMB = r_CMB
    elif plan.implicit_rbl:
        logw_CMB = r_CMB / knobs.beta - lr_CMB
    else:
        logw_CMB = (r_CMB - r["baseline_reward"]) / knobs.beta
    q_BC = jax.vmap(lambda r_MB, w_MB: tq.combine(r_MB, w_MB, plan))(r_CMB, logw_CMB).T
    logp = tq.lm_logp(outs, plan)
    token_B, info = tq.choose(cand_BC, prior_BC, q_BC, logp, step_keys_B, knobs, plan)
    token_B = jnp.where(live_B, token_B, tq.PAD)
    info["logp_sft_B"] = jnp.take_along_axis(logp["sft"], token_B[:, None], axis=-1)[:, 0]
    return (*loop.commit(lms, caches, token_B, mesh), token_B, info)


class Clock:
    def __init__(self):
        self.seconds = dict(propose=0.0, host_text=0.0, transfer=0.0, score_commit=0.0)
        self.reader_tokens = 0

    def add(self, name, since):
        now = time.perf_counter()
        self.seconds[name] += now - since
        return now


def _encode(codec, rows, responses, clock):
    enc = codec.encode(rows, responses)
    codec.check(rows, enc)
    clock.reader_tokens += sum(len(x) for x in enc)
    return enc


def score_texts(codecs, reader_models, rows, responses, role="reward", clock=None):
    """The reader ``role``'s score of each (prompt index, response) pair, float32 ``[len(rows)]``,
    through the text round trip (one encoding per group: the prefix is all but its last id)."""
    clock = clock or Clock()
    t = time.perf_counter()
    host = layout(_encode(codecs[role], rows, responses, clock), len(rows))[:4]
    t = clock.add("host_text", t)
    dev = jax.block_until_ready(jax.device_put(host))
    t = clock.add("transfer", t)
    out = np.asarray(read_texts(reader_models[role], *dev))[0]
    clock.add("score_commit", t)
    return out


class _Prefixes:
    """A reader's prefix cache, kept across steps while it is exact and pays.

    ``ids[b]``: the reader ids row ``b``'s cache holds. A step may reuse it when, for every live
    row, every encoding of the row starts with exactly those ids (checked id by id: the cache is
    then what a full re-encode would compute); it does when the suffixes after it cost no more
    reader positions (``R·B·U``) than prefilling every row's new shared prefix (``B·P``) and
    reading the shorter suffixes after that. The prefix bucket (``slots``) never shrinks during a
    decode."""

    def __init__(self):
        self.ids, self.cache, self.slots = None, None, 0

    def keep(self, enc, shared, live, R):
        """Per-row lengths of the cached ids when every live row's encodings start with them,
        else None."""
        if self.ids is None:
            return None
        for b in np.flatnonzero(live):
            n = len(self.ids[b])
            if n > shared[b] or enc[b * R][:n] != self.ids[b]:
                return None
        return np.asarray([len(x) for x in self.ids])


def _suffix_slots(enc, keep, R):
    return bucket(max(max(len(x) - int(keep[j // R]), 1) for j, x in enumerate(enc)))


def step_reads(codecs, readers, prefixes, rows, responses, live, groups, clock):
    """Per reader: its prefix cache (kept or prefilled again) and the suffix arrays of this
    step's encodings. Every reader's encodings are checked before any prefix state changes, so a
    `ReaderContextError` leaves ``prefixes`` as it was."""
    t = time.perf_counter()
    encodings = {role: _encode(codec, rows, responses, clock) for role, codec in codecs.items()}
    host, refresh = {}, {}
    for role, enc in encodings.items():
        R = len(enc) // groups
        shared = shared_prefix(enc, groups)
        state = prefixes.setdefault(role, _Prefixes())
        keep = state.keep(enc, shared, live, R)
        if keep is not None:        # reuse only when it costs fewer reader positions
            fresh = len(enc) * _suffix_slots(enc, shared, R) + groups * max(
                bucket(max(int(shared.max()), 1)), state.slots)
            if len(enc) * _suffix_slots(enc, keep, R) > fresh:
                keep = None
        if keep is None:
            state.ids = [enc[b * R][:shared[b]] for b in range(groups)]
            refresh[role] = prefix_arrays(state.ids, state.slots)
            state.slots = refresh[role][0].shape[1]
            keep = shared
        host[role] = suffix_arrays(enc, groups, keep)
    t = clock.add("host_text", t)
    dev, new = jax.block_until_ready(jax.device_put((host, refresh)))
    clock.add("transfer", t)
    for role, arrays in new.items():
        prefixes[role].cache = prefill_reader(readers[role], *arrays)
    return {role: prefixes[role].cache for role in codecs}, dev


def make_codecs(params, roles, prompts, prompt_ids, plan: DecodePlan) -> dict:
    """A `TextCodec` per reader the plan uses: text for ``roles``, ids for the others."""
    sft_tok = getattr(params.sft, "tokenizer", None)
    return {r: TextCodec(r, sft_tok, getattr(getattr(params, r), "tokenizer", None), prompts,
                         prompt_ids, getattr(params, r).max_length, identity=r not in roles)
            for r in plan.reward_models}
