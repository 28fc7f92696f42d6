"""Continuous batching: at most ``B`` rows in flight; a finished row takes the next prompt.

A batch decoded together runs until its longest row ends; a row that stopped early keeps its slot
(and in TQ* its k·M rollouts) until then. Here the rows of a batch are *slots*: every row keeps its
own step (`loop.step_fn` with ``step`` ``[B]``) and its own write position in every model's cache
(the model protocol's ``insert``), so a freshly prefilled prompt can be put into a finished row
while the others go on. The host only moves prompts in and results out, between chunks:

- `run_chunk` (one compiled program per plan and ``B``) runs at most ``chunk`` steps, and ends
  early once every row is done or, while prompts are waiting (``refill``), once a row finishes;
- `insert` prefills ``R`` new prompts (``R`` a power of two up to ``B``: a few compiled programs)
  and puts them into their slots, with their own keys; padding entries name slot ``B`` and are
  dropped.

Each prompt's key, steps and draws are those of decoding it alone (docs/design.md, "Keys and
determinism"), so its result does not depend on which slot it ran in or beside which prompts.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from tqjax.decoding import loop
from tqjax.decoding.decode_plan import DecodePlan, batch_bucket
from tqjax.decoding.state import DecodeState, init_state
from tqjax.parallel.multihost import fetch, put_global, spans_processes

ROW_FIELDS = ("tokens_BN", "length_B", "reward_B", "logp_sft_B", "kl_B", "log_ratio_B", "bad_B",
              "fallback_B", "rank_BN", "q_BNC")


def _empty(params, rows: int, slots: int, plan: DecodePlan, mesh=None) -> DecodeState:
    """``rows`` empty slots (all done), caches of ``slots`` positions with per-row positions."""
    caches, outs = loop.empty_rows(loop.loop_models(params, plan, mesh), rows, slots, mesh)
    state = init_state(caches, outs, jnp.zeros((rows,), bool), plan)
    return dataclasses.replace(state, step=jnp.zeros((rows,), jnp.int32))


def _insert(params, state: DecodeState, keys_B, tokens_RT, start_R, keys_R, slots_R,
           plan: DecodePlan, mesh=None):
    """Prefill ``R`` left-padded prompts and put them into rows ``slots_R`` (``B``: skipped) of
    ``state``, each a fresh row at step 0 with its key. Returns ``(state, keys_B)``."""
    models = loop.loop_models(params, plan, mesh)
    T = tokens_RT.shape[1]
    caches_R, outs_R = loop.prefill(models, tokens_RT, start_R, T + plan.max_new_tokens, mesh)
    fresh = init_state(caches_R, outs_R, jnp.ones(start_R.shape, bool), plan)
    put = lambda old, new: old.at[slots_R].set(new.astype(old.dtype), mode="drop")
    changes = {name: put(getattr(state, name), getattr(fresh, name))
               for name in ROW_FIELDS + ("done_B",)}
    changes["step"] = put(state.step, jnp.zeros(slots_R.shape, jnp.int32))
    changes["caches"], changes["outs"] = loop.insert_rows(models, state.caches, state.outs,
                                                          caches_R, outs_R, slots_R, mesh)
    keys_B = jax.random.wrap_key_data(put(jax.random.key_data(keys_B), jax.random.key_data(keys_R)))
    return dataclasses.replace(state, **changes), keys_B


def _run_chunk(params, state: DecodeState, keys_B, knobs, refill, plan: DecodePlan, chunk: int,
              mesh=None):
    """Up to ``chunk`` steps of every live row; ends early when all rows are done or, with
    ``refill`` (traced bool: prompts are waiting), when a row finishes. Returns ``(state, steps)``."""
    body = loop.step_fn(loop.loop_models(params, plan, mesh), keys_B, knobs, plan, mesh)
    done0_B = state.done_B

    def cond(c):
        i, s = c
        finished = jnp.any(s.done_B & ~done0_B)
        return (i < chunk) & ~jnp.all(s.done_B) & ~(refill & finished)

    steps, state = jax.lax.while_loop(cond, lambda c: (c[0] + 1, body(c[1])),
                                      (jnp.zeros((), jnp.int32), state))
    return state, steps


empty = jax.jit(_empty, static_argnames=("rows", "slots", "plan", "mesh"))
insert = jax.jit(_insert, static_argnames=("plan", "mesh"), donate_argnames=("state", "keys_B"))
run_chunk = jax.jit(_run_chunk, static_argnames=("plan", "chunk", "mesh"), donate_argnames=("state",))


def _placer(mesh):
    """How host inputs are fed: as they are, or replicated over a mesh that spans processes (every
    process passes the same values)."""
    if mesh is None or not spans_processes(mesh):
        return jnp.asarray
    from jax.sharding import NamedSharding, PartitionSpec

    replicated = NamedSharding(mesh, PartitionSpec())
    return lambda x: put_global(x, replicated)


@dataclasses.dataclass
class Stats:
    """What a continuous decode did: loop ``steps``, ``row_steps`` (steps × rows in flight),
    ``live_row_steps`` (of them, steps of live rows), ``chunks``, ``inserts`` (prefill calls),
    ``inserted`` (rows prefilled) and ``host_s``: seconds from a chunk's results arriving on the
    host to the next chunk's launch (handing out results, prefilling and inserting prompts)."""

    steps: int = 0
    row_steps: int = 0
    live_row_steps: int = 0
    chunks: int = 0
    inserts: int = 0
    inserted: int = 0
    host_s: float = 0.0


def insert_layout(token_lists, free, rows: int, prompt_len: int, multiple: int = 1):
    """Host arrays of an insert: ``token_lists`` left-padded to ``prompt_len`` (``tokens_RT``,
    ``start_R``) going to slots ``free``, in ``R`` rows (a power of two, a multiple of
    ``multiple``, at most the slots); padding rows name slot ``rows`` and are dropped."""
    R = min(batch_bucket(len(token_lists), multiple), max(rows, multiple))
    tokens_RT = np.zeros((R, prompt_len), np.int32)
    start_R = np.full((R,), prompt_len - 1, np.int32)
    slots_R = np.full((R,), rows, np.int32)
    for r, ids in enumerate(token_lists):
        tokens_RT[r, prompt_len - len(ids):] = ids
        start_R[r], slots_R[r] = prompt_len - len(ids), free[r]
    return tokens_RT, start_R, slots_R


def decode_rows(params, items, rows: int, prompt_len: int, knobs, plan: DecodePlan, *,
                chunk: int | None = None, mesh=None, multiple: int = 1,
                on_done: Callable | None = None, stats: Stats | None = None) -> list[dict]:
    """Decode ``items`` (``(ids, key)``: int token ids and a typed PRNG key) with at most ``rows``
    in flight, prompts left-padded to ``prompt_len`` slots. Returns one dict of NumPy arrays per
    item, in order (the `ROW_FIELDS` of its row, ``tokens_BN`` cut to its length).

    chunk: most steps between host visits (default: ``max_new_tokens``); multiple: insert batches
    are a multiple of it (the mesh's data axis); on_done(i, result) is called as each item
    finishes; stats: a `Stats` to fill.
    """
    chunk = int(chunk or plan.max_new_tokens)
    stats = stats if stats is not None else Stats()
    put = _placer(mesh)
    state = empty(params, rows, prompt_len + plan.max_new_tokens, plan, mesh)
    keys_B = put(jax.random.wrap_key_data(
        jnp.zeros((rows,) + jax.random.key_data(items[0][1]).shape, jnp.uint32)))
    queue = collections.deque(range(len(items)))
    slot_item: list[int | None] = [None] * rows
    results: list[dict | None] = [None] * len(items)

    def fill(state, keys_B):
        free = [b for b in range(rows) if slot_item[b] is None]
        take = [queue.popleft() for _ in range(min(len(free), len(queue)))]
        if not take:
            return state, keys_B
        tokens_RT, start_R, slots_R = insert_layout([items[i][0] for i in take], free, rows,
                                                    prompt_len, multiple)
        keys = [items[take[0]][1]] * len(slots_R)
        for r, i in enumerate(take):
            keys[r] = items[i][1]
            slot_item[free[r]] = i
        stats.inserts += 1
        stats.inserted += len(take)
        return jax.block_until_ready(insert(
            params, state, keys_B, put(tokens_RT), put(start_R), put(jnp.stack(keys)),
            put(slots_R), plan=plan, mesh=mesh))

    state, keys_B = fill(state, keys_B)
    while any(i is not None for i in slot_item):
        state, steps = run_chunk(params, state, keys_B, knobs, put(np.asarray(bool(queue))),
                                 plan=plan, chunk=chunk, mesh=mesh)
        out = fetch({name: getattr(state, name) for name in ROW_FIELDS + ("done_B",)})
        t1 = time.perf_counter()
        steps = int(fetch(steps))
        stats.chunks += 1
        stats.steps += steps
        stats.row_steps += steps * rows
        for b, i in enumerate(slot_item):
            if i is None or not out["done_B"][b]:
                continue
            n = int(out["length_B"][b])
            result = {name: out[name][b] for name in ROW_FIELDS}
            result["tokens_BN"] = result["tokens_BN"][:n]
            results[i] = result
            slot_item[b] = None
            if on_done is not None:
                on_done(i, result)
        state, keys_B = fill(state, keys_B)
        stats.host_s += time.perf_counter() - t1
    stats.live_row_steps += int(sum(r["length_B"] for r in results))
    return results
