"""The candidate methods with text readers, over slots: a finished prompt's slot takes the next.

Each step is `tqjax.decoding.cross`'s: `cross.propose` (jitted) for every slot, the text round
trip on the host, then `cross.score_commit` (jitted). As under `tqjax.decoding.continuous`, every
slot keeps its own step, key and write position in each language model's cache, so a prompt's
result is that of decoding it alone, whichever slot it ran in and beside whichever prompts. A
static batch is the case of one slot per prompt.

A prompt whose reader text outgrows the reader's context mid-decode raises the codec's
`ReaderContextError` (it names the prompt's item index); with ``on_error`` it goes there instead,
its slot is freed, and the other slots carry on with the same step: their results do not change.
"""

from __future__ import annotations

import collections
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from tqjax.decoding import cross, sampler
from tqjax.decoding.continuous import Stats, insert_layout
from tqjax.decoding.decode_plan import DecodePlan, batch_bucket
from tqjax.decoding.text_reader import ReaderContextError

_SUMS = ("logp_sft_B", "kl_B", "log_ratio_B", "bad_B", "fallback_B")


class _Slot:
    """One prompt in flight: its item, the committed ids, the running sums and, with
    diagnostics, each step's rank and Q̂."""

    def __init__(self, item: int):
        self.item, self.tokens, self.ranks, self.qs = item, [], [], []
        self.sums = {name: np.float32(0) for name in _SUMS}

    def result(self, reward, k: int) -> dict:
        """The row as the fused loops give it (`continuous.ROW_FIELDS`)."""
        n = len(self.tokens)
        return dict(tokens_BN=np.asarray(self.tokens, np.int32), length_B=np.int32(n),
                    reward_B=np.float32(reward),
                    **{name: np.float32(self.sums[name]) for name in _SUMS[:3]},
                    bad_B=np.int32(self.sums["bad_B"]), fallback_B=np.int32(self.sums["fallback_B"]),
                    rank_BN=np.asarray(self.ranks, np.int32),
                    q_BNC=np.asarray(self.qs, np.float32).reshape(-1, k))


def decode_rows(params, items, rows: int, prompt_len: int, codecs, knobs, plan: DecodePlan, *,
                mesh=None, multiple: int = 1, on_done: Callable | None = None,
                on_error: Callable | None = None, clock: cross.Clock | None = None,
                stats: Stats | None = None) -> dict:
    """Decode ``items`` (``(ids, key)``; item ``i`` is row ``i`` of every codec) with at most
    ``rows`` slots, prompts left-padded to ``prompt_len``. Returns ``results`` (per item, the
    `continuous.ROW_FIELDS` of its row; None for an item that went to ``on_error``), ``failed``,
    ``steps``, ``buckets`` (each step's reader (prefix, suffix) slots) and ``clock``.

    multiple: insert batches are a multiple of it (the mesh's data axis); on_done(i, row) as
    item ``i`` finishes; on_error(i, error) takes a `ReaderContextError` (without it, it is
    raised); stats: a `continuous.Stats` to fill (every step is a chunk: the host reads between)."""
    clock = clock or cross.Clock()
    stats = stats if stats is not None else Stats()
    lms, readers = cross.held_models(params, plan, mesh)
    N, slots = plan.max_new_tokens, prompt_len + plan.max_new_tokens
    caches, outs = cross.empty(lms, rows=rows, slots=slots, mesh=mesh)
    impl = jax.random.key_impl(items[0][1])
    key_data = np.zeros((rows,) + jax.random.key_data(items[0][1]).shape, np.uint32)
    step_B = np.zeros(rows, np.int32)
    queue = collections.deque(range(len(items)))
    in_slot: list[_Slot | None] = [None] * rows
    results: list[dict | None] = [None] * len(items)
    failed, buckets, prefixes = [], set(), {}     # prefixes: reader role -> `cross._Prefixes`
    reward = "reward" in plan.reward_models

    def fill(caches, outs):
        free = [b for b in range(rows) if in_slot[b] is None]
        take = [queue.popleft() for _ in range(min(len(free), len(queue)))]
        if not take:
            return caches, outs
        stats.inserts += 1
        stats.inserted += len(take)
        tokens_RT, start_R, slots_R = insert_layout([items[i][0] for i in take], free, rows,
                                                    prompt_len, multiple)
        for r, i in enumerate(take):
            in_slot[free[r]] = _Slot(i)
            key_data[free[r]] = np.asarray(jax.random.key_data(items[i][1]))
            step_B[free[r]] = 0
        return cross.insert(lms, caches, outs, tokens_RT, start_R, slots_R, slots=slots, mesh=mesh)

    def finish(ended):
        scores = np.full(len(ended), np.nan, np.float32)
        if reward:      # one read of the finished responses, in a power-of-two bucket
            pad = ended + [ended[-1]] * (batch_bucket(len(ended)) - len(ended))
            scores = cross.score_texts(codecs, readers, [in_slot[b].item for b in pad],
                                       [in_slot[b].tokens for b in pad], clock=clock)[:len(ended)]
        for b, score in zip(ended, scores):
            slot, in_slot[b] = in_slot[b], None
            results[slot.item] = slot.result(score, plan.k)
            if on_done is not None:
                on_done(slot.item, results[slot.item])

    def reads(toks, last):
        """The readers' caches and arrays of this step's rollouts; a prompt whose text outgrows
        a reader's context goes to ``on_error`` (its slot freed) and the step is read again."""
        while True:
            live = [b for b in range(rows) if in_slot[b] is not None]
            if not live:
                return None
            row_ids, responses = [], []
            C, M = toks.shape[:2]
            for b in range(rows):       # a free slot reads a copy of a live one, never used
                slot = in_slot[b] or in_slot[live[0]]
                src = b if in_slot[b] is not None else live[0]
                for c in range(C):
                    for m in range(M):
                        row_ids.append(slot.item)
                        responses.append(slot.tokens + toks[c, m, src, :last[c, m, src] + 1].tolist())
            try:
                return cross.step_reads(codecs, readers, prefixes, row_ids, responses,
                                        np.asarray([s is not None for s in in_slot]), rows, clock)
            except ReaderContextError as error:
                if on_error is None:
                    raise
                b = next(b for b in live if in_slot[b].item == error.prompt)
                in_slot[b] = None
                failed.append(error.prompt)
                on_error(error.prompt, error)

    caches, outs = fill(caches, outs)
    steps, t = 0, time.perf_counter()
    while any(slot is not None for slot in in_slot):
        keys_B = jax.random.wrap_key_data(jnp.asarray(key_data), impl=impl)
        step_keys_B = sampler.step_key(keys_B, jnp.asarray(step_B))
        cand, prior, toks, last, lr = cross.propose(lms, caches, outs, step_keys_B, knobs, plan)
        jax.block_until_ready(toks)
        t = clock.add("propose", t)
        toks, last = jax.device_get((toks, last))
        clock.add("transfer", t)
        got = reads(toks, last)
        if got is not None:
            reader_caches, arrays = got
            buckets.add(tuple((r, prefixes[r].slots, x[0].shape[2]) for r, x in sorted(arrays.items())))
            live = np.asarray([s is not None for s in in_slot])
            t = time.perf_counter()
            caches, outs, token_B, info = cross.score_commit(
                lms, readers, caches, outs, cand, prior, lr, reader_caches, arrays, step_keys_B,
                jnp.asarray(live), knobs, plan, mesh=mesh)
            info = jax.device_get(dict(info, token_B=token_B))
            clock.add("score_commit", t)
            ended = []
            for b in np.flatnonzero(live):
                slot, token = in_slot[b], int(info["token_B"][b])
                slot.tokens.append(token)
                for name in _SUMS:
                    slot.sums[name] = np.float32(slot.sums[name] + np.float32(info[name][b]))
                if plan.diagnostics:
                    slot.ranks.append(int(info["rank_B"][b]))
                    slot.qs.append(info["q_BC"][b])
                step_B[b] += 1
                if step_B[b] >= N or (not plan.ignore_eos and token in plan.stop_ids):
                    ended.append(int(b))
            steps += 1
            stats.steps, stats.chunks = stats.steps + 1, stats.chunks + 1
            stats.row_steps += rows
            stats.live_row_steps += int(live.sum())
            host = time.perf_counter()
            if ended:
                finish(ended)
            caches, outs = fill(caches, outs)
            stats.host_s += time.perf_counter() - host
        else:
            caches, outs = fill(caches, outs)
        t = time.perf_counter()
    return dict(results=results, failed=failed, steps=steps, buckets=sorted(buckets), clock=clock)
