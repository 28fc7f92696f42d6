"""How many prompts a continuous decode keeps in flight (``batch_size``), and whether they fit.

Two measures of the memory a decode needs per device:

- the **estimate** (`tqjax.decoding.memory.plan`): analytic, from the plan's roles and shapes,
  its activation terms fitted to XLA:CPU; it plans any mesh and any device, present or not
  (``tqjax plan``);
- the **compiled** size (`compiled_bytes`): XLA's memory analysis of the programs the decode
  will run (`continuous.run_chunk` and a full `continuous.insert`), compiled for the device
  that is present. JAX keeps what it compiled, so the decode that follows reuses those programs.

On one device the compiled size decides: a ``batch_size`` fits when the compiled programs do, and
``batch_size=0`` takes the estimate's largest batch and steps down while the compiled programs do
not fit. On a mesh the estimate decides (its programs' per-device sizes would need the placed
inputs of every device).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from tqjax.decoding import continuous
from tqjax.models.config import ModelConfig

MAX_COMPILES = 4        # compiled sizes tried by ``batch_size=0`` before giving up on a batch


def compiled_bytes(decoder, rows: int, prompt_len: int, chunk: int | None = None) -> int:
    """Peak bytes on this device of the continuous decode of ``decoder`` with ``rows`` rows in
    flight, prompts padded to ``prompt_len`` and at most ``chunk`` steps between host visits (as
    `continuous.decode_rows` defaults it): the larger of a chunk of steps and an insert of
    ``rows`` prompts, each its arguments + outputs − donated buffers + temporaries (XLA's memory
    analysis of the compiled program; nothing is allocated)."""
    params, plan = decoder.placed, decoder.plan
    slots = prompt_len + plan.max_new_tokens
    state = jax.eval_shape(functools.partial(continuous.empty, rows=rows, slots=slots, plan=plan,
                                             mesh=None), params)
    keys_B = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), rows))
    i32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.int32)
    chunk = continuous.run_chunk.lower(params, state, keys_B, decoder.knobs,
                                       jax.ShapeDtypeStruct((), jnp.bool_), plan=plan,
                                       chunk=int(chunk or plan.max_new_tokens),
                                       mesh=None).compile()
    insert = continuous.insert.lower(params, state, keys_B, i32(rows, prompt_len), i32(rows),
                                     keys_B, i32(rows), plan=plan, mesh=None).compile()
    return max(_peak(chunk), _peak(insert))


def _peak(compiled) -> int:
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
               + m.temp_size_in_bytes)


def planned_batch_size(decoder, batch_size: int | None, token_lists, prompt_len: int,
                       chunk: int | None = None) -> int:
    """``batch_size`` checked against the memory this device has (0: the largest that fits, at
    most the prompts; ``chunk`` as the decode will run it). Only transformers are planned: when a
    model the decode runs is another kind (the toy, the gold reward), nothing is (None or 0: all
    prompts at once)."""
    from tqjax.decoding.memory import PlanError, device_memory, format_bytes, largest_batch, plan

    params, config, mesh, dplan = decoder.params, decoder.config, decoder.mesh, decoder.plan
    known = {role: getattr(params, role) for role in dplan.given
             if isinstance(getattr(getattr(params, role), "config", None), ModelConfig)}
    P = len(token_lists)
    if not set(dplan.active) <= set(known):
        return batch_size or P
    longest = max(len(ids) for ids in token_lists)
    budget = device_memory()
    n = dplan.n if dplan.method == "bon" else 1
    compiled = None if mesh is not None else (
        lambda b: compiled_bytes(decoder, min(b, P) * n, prompt_len, chunk))
    if batch_size == 0:
        batch_size = largest_batch(known, config, longest, budget, mesh, max_batch=P,
                                   continuous=True)
        tries = MAX_COMPILES if compiled else 0
        while batch_size >= 1 and tries:
            tries -= 1
            need = compiled(batch_size)
            if need <= budget:
                break
            batch_size = min(batch_size - 1, int(batch_size * budget / need))
        else:
            if compiled and batch_size >= 1:     # still over after MAX_COMPILES sizes
                batch_size = 0
        if batch_size < 1:
            raise PlanError(f"not even batch_size=1 fits this device's {format_bytes(budget)} with "
                            f"this configuration; lower max_new_tokens, horizon or rollouts, or "
                            f"set candidate_chunk")
        return batch_size
    if compiled is None:
        need, how = plan(known, config, batch_size, longest, mesh, budget=budget,
                         continuous=True).total, "the memory planner estimates"
    else:
        need, how = compiled(batch_size), "the compiled programs need"
    if need <= budget:
        return batch_size
    raise PlanError(f"batch_size={batch_size} does not fit this device: {how} "
                    f"{format_bytes(need)} per device, the device has {format_bytes(budget)}; pass "
                    f"a smaller batch_size, or 0 to let the planner pick")
