"""`tqjax.decode` when a reader has its own tokenizer: the text round trip
(`tqjax.decoding.cross`), over slots for the candidate methods (`tqjax.decoding.cross_rows`), as a
`DecodeOutput`."""

from __future__ import annotations

import numpy as np

from tqjax.api.outputs import DecodeOutput, build, concatenate, empty, select, text_of
from tqjax.api.params import place
from tqjax.decoding import cross, cross_rows
from tqjax.decoding.decode_plan import Knobs
from tqjax.decoding.text_reader import ReaderContextError


def decode_text(params, prompts, config, arrays, token_lists, plan, roles, mesh, *, rows=None,
                on_done=None, on_error=None, stats=None):
    """Decode with the readers ``roles`` reading text (docs/design.md, "Readers with their own
    tokenizer"). Prompts whose own text is already longer than a reader's context are refused
    before this, naming the prompt. With ``mesh`` (one process), params are placed by the sharding
    rules and the batch split over "data", as in the fused path; the host's reader arrays join
    them where the programs run.

    The candidate methods run over slots (`tqjax.decoding.cross_rows`): ``rows`` of them (None:
    one per row of ``arrays``, a static batch), a finished prompt's slot taking the next prompt;
    on_done(i, output) as prompt ``i`` finishes; on_error(i, error) takes a prompt whose reader
    text outgrows the context (else it is raised), and the output then holds the other prompts
    only, with ``diagnostics["failed"]``; stats: a `tqjax.decoding.continuous.Stats` to fill. The
    plain methods run as one static batch."""
    from tqjax.parallel.multihost import spans_processes

    if mesh is not None:
        if spans_processes(mesh):
            raise ValueError(f"a device mesh across processes is not supported with readers that "
                             f"have their own tokenizer ({', '.join(roles)}): every process would "
                             f"have to re-tokenise the whole batch; use a mesh of this process's "
                             f"devices (tqjax batch without a global --mesh)")
    codecs = cross.make_codecs(params, roles, list(prompts), token_lists, plan)
    knobs = Knobs.from_config(config)
    keys_P = arrays["keys_B"][:len(token_lists)]
    tokenizer = getattr(params.sft, "tokenizer", None)
    if mesh is not None:
        params, arrays = place(params, arrays, mesh)
    if not plan.candidates:
        return _plain(params, arrays, token_lists, codecs, knobs, config, plan, tokenizer)
    data = 1 if mesh is None else dict(zip(mesh.axis_names, mesh.devices.shape)).get("data", 1)
    done = None
    if on_done is not None:
        done = lambda i, row: on_done(i, build([row], plan, tokenizer, True, steps=0))
    run = cross_rows.decode_rows(params, list(zip(token_lists, keys_P)),
                                 rows or arrays["tokens_BT"].shape[0], arrays["tokens_BT"].shape[1],
                                 codecs, knobs, plan, mesh=mesh, multiple=data, on_done=done,
                                 on_error=on_error, stats=stats)
    kept = [row for row in run["results"] if row is not None]
    out = build(kept, plan, tokenizer, True, steps=run["steps"]) if kept else empty()
    out.diagnostics.update(cross_seconds=dict(run["clock"].seconds),
                           reader_tokens=run["clock"].reader_tokens, reader_buckets=run["buckets"])
    if on_error is not None:
        out.diagnostics["failed"] = run["failed"]
    return out


def _plain(params, arrays, token_lists, codecs, knobs, config, plan, tokenizer) -> DecodeOutput:
    """``sft``/``baseline``/best-of-N with a text reader: `cross.plain`, as a `DecodeOutput`."""
    out = cross.plain(params, arrays, token_lists, codecs, knobs, config, plan)
    diagnostics = dict(steps=int(out["steps"]), nonfinite=out["bad_B"], fallbacks=out["fallback_B"],
                       cross_seconds=out["cross_seconds"], reader_tokens=out["reader_tokens"])
    for name in ("sample_rewards", "kept"):
        if name in out:
            diagnostics[name] = out[name]
    return DecodeOutput(tokens=out["tokens"], texts=[text_of(tokenizer, ids) for ids in out["tokens"]],
                        rewards=np.asarray(out["reward_B"], np.float32), logp_sft=out["logp_sft_B"],
                        kl=out["kl_B"], log_ratio=out["log_ratio_B"], diagnostics=diagnostics)


def decode_text_batches(run, prompts, batch_size, indices, on_done, on_error):
    """``batch_size`` with a reader that has its own tokenizer, for the plain methods (``sft``,
    ``baseline``, best-of-N; the candidate methods refill slots, `decode_text`): the prompts run
    as static batches of ``batch_size`` (0: all at once) through
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
