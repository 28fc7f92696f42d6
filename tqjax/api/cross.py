"""`tqjax.decode` when a reader has its own tokenizer: checks that need the prompts, then the text
round-trip engine (`tqjax.decoding.cross`), unpacked into a `DecodeOutput`."""

from __future__ import annotations

import numpy as np

from tqjax.api.outputs import DecodeOutput, concatenate, empty, select, text_of
from tqjax.api.params import place
from tqjax.decoding import cross
from tqjax.decoding.decode_plan import Knobs
from tqjax.decoding.text_reader import ReaderContextError


def decode_text(params, prompts, config, arrays, token_lists, plan, roles, mesh):
    """Decode with the readers ``roles`` reading text (docs/design.md, "Readers with their own
    tokenizer"). Prompts whose own text is already longer than a reader's context are refused
    here, before any decoding, naming the prompt. With ``mesh`` (one process), params are placed
    by the sharding rules and the batch split over "data", as in the fused path; the host's
    reader arrays join them where the programs run."""
    from tqjax.parallel.multihost import spans_processes

    if mesh is not None:
        if spans_processes(mesh):
            raise ValueError(f"a device mesh across processes is not supported with readers that "
                             f"have their own tokenizer ({', '.join(roles)}): every process would "
                             f"have to re-tokenise the whole batch; use a mesh of this process's "
                             f"devices (tqjax batch without a global --mesh)")
    codecs = cross.make_codecs(params, roles, list(prompts), token_lists, plan)
    knobs = Knobs.from_config(config)
    if mesh is not None:
        params, arrays = place(params, arrays, mesh)
    if plan.candidates:
        out = cross.generate(params, arrays, token_lists, codecs, knobs, plan,
                             diagnostics=plan.diagnostics)
    else:
        out = cross.plain(params, arrays, token_lists, codecs, knobs, config, plan)
    tokenizer = getattr(params.sft, "tokenizer", None)
    diagnostics = dict(steps=int(out["steps"]), nonfinite=out["bad_B"], fallbacks=out["fallback_B"],
                       cross_seconds=out["cross_seconds"], reader_tokens=out["reader_tokens"])
    for name in ("rank", "q", "sample_rewards", "kept", "reader_buckets"):
        if name in out:
            diagnostics[name] = out[name]
    rewards = None if out["reward_B"] is None else np.asarray(out["reward_B"], np.float32)
    return DecodeOutput(tokens=out["tokens"], texts=[text_of(tokenizer, ids) for ids in out["tokens"]],
                        rewards=rewards, logp_sft=out["logp_sft_B"], kl=out["kl_B"],
                        log_ratio=out["log_ratio_B"], diagnostics=diagnostics)


def decode_text_batches(run, prompts, batch_size, indices, on_done, on_error):
    """``batch_size`` with a reader that has its own tokenizer: the text round trip has no slot
    refill yet, so the prompts run as static batches of ``batch_size`` (0: all at once) through
    ``run(prompts, indices)`` (`tqjax.decode` of one batch), each prompt keeping its own key (its
    index), and ``on_done`` is called batch by batch.

    A prompt whose reader text outgrows the reader's context during decoding raises a
    `ReaderContextError` naming its position in ``prompts``; with ``on_error`` it goes to
    ``on_error(i, error)`` instead, and the rest of its batch is decoded again without it (the
    same keys, so the same results as without it). The output then holds the decoded prompts
    only, in order, and ``diagnostics["failed"]`` the positions that went to ``on_error``."""
    prompts = list(prompts)
    indices = list(range(len(prompts))) if indices is None else [int(i) for i in indices]
    size = batch_size or len(prompts)
    outs, failed = [], []
    for s in range(0, len(prompts), size):
        rows = list(range(s, min(s + size, len(prompts))))
        while rows:
            try:
                out = run([prompts[i] for i in rows], [indices[i] for i in rows])
            except ReaderContextError as e:
                error = e.at(rows.pop(e.prompt))
                if on_error is None:
                    raise error from None
                failed.append(error.prompt)
                on_error(error.prompt, error)
                continue
            if on_done is not None:
                for j, i in enumerate(rows):
                    on_done(i, select(out, [j]))
            outs.append(out)
            break
    out = concatenate(outs) if outs else empty()
    if on_error is not None:
        out.diagnostics["failed"] = failed
    return out
