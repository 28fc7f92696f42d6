"""`tqjax.decode` when a reader has its own tokenizer: the text round trip
(`tqjax.decoding.cross`), over slots for the candidate methods (`tqjax.decoding.cross_rows`), as a
`DecodeOutput`; for the plain methods and best-of-N, the reader's score of the fused engine's
responses (`TextScorer`)."""

from __future__ import annotations

import numpy as np

from tqjax.api.outputs import build, empty
from tqjax.api.params import place_arrays
from tqjax.decoding import cross, cross_rows
from tqjax.decoding.decode_plan import sampling_plan


def decode_text(decoder, prompts, token_lists, arrays, *, rows=None, on_done=None,
                on_error=None, stats=None):
    """Decode with ``decoder`` (a `tqjax.api.decoder.Decoder`) whose plan has readers of text
    (docs/design.md, "Readers with their own tokenizer"). Prompts whose own text is already
    longer than a reader's context are refused before this, naming the prompt. With a mesh (one
    process), the decoder's placed params run and the batch is split over "data", as in the fused
    path; the host's reader arrays join them where the programs run.

    The candidate methods run over slots (`tqjax.decoding.cross_rows`): ``rows`` of them (None:
    one per row of ``arrays``, a static batch), a finished prompt's slot taking the next prompt;
    on_done(i, output) as prompt ``i`` finishes; on_error(i, error) takes a prompt whose reader
    text outgrows the context (else it is raised), and the output then holds the other prompts
    only, with ``diagnostics["failed"]``; stats: a `tqjax.decoding.continuous.Stats` to fill."""
    plan, mesh, tokenizer = decoder.plan, decoder.mesh, decoder.tokenizer
    check_mesh(mesh, plan.text_readers)
    codecs = cross.make_codecs(decoder.params, plan.text_readers, list(prompts), token_lists, plan)
    keys_P = arrays["keys_B"][:len(token_lists)]
    if mesh is not None:
        arrays = place_arrays(arrays, mesh)
    done = None
    if on_done is not None:
        done = lambda i, row: on_done(i, build([row], plan, tokenizer, True, steps=0))
    run = cross_rows.decode_rows(decoder.placed, list(zip(token_lists, keys_P)),
                                 rows or arrays["tokens_BT"].shape[0], arrays["tokens_BT"].shape[1],
                                 codecs, decoder.knobs, plan, mesh=mesh, multiple=decoder.data,
                                 on_done=done, on_error=on_error, stats=stats)
    kept = [row for row in run["results"] if row is not None]
    out = build(kept, plan, tokenizer, True, steps=run["steps"]) if kept else empty()
    out.diagnostics.update(cross_seconds=dict(run["clock"].seconds),
                           reader_tokens=run["clock"].reader_tokens, reader_buckets=run["buckets"])
    if on_error is not None:
        out.diagnostics["failed"] = run["failed"]
    return out


def check_mesh(mesh, roles) -> None:
    """A mesh across processes is refused with text readers."""
    from tqjax.parallel.multihost import spans_processes

    if mesh is not None and spans_processes(mesh):
        raise ValueError(f"a device mesh across processes is not supported with readers that "
                         f"have their own tokenizer ({', '.join(roles)}): every process would "
                         f"have to re-tokenise the whole batch; use a mesh of this process's "
                         f"devices (tqjax batch without a global --mesh)")


class TextScorer:
    """The plain methods and best-of-N with a text reader: the fused engine samples the responses
    (`sampling_plan`: ``fused`` params, ``plan``), and `score` reads each prompt's responses as
    text once they are all done (`cross.score_texts`)."""

    def __init__(self, decoder, prompts, token_lists):
        plan = decoder.plan
        check_mesh(decoder.mesh, plan.text_readers)
        self.fused, self.plan = sampling_plan(decoder.placed, decoder.config, plan)
        self.codecs = cross.make_codecs(decoder.params, plan.text_readers, list(prompts),
                                        token_lists, plan)
        self.readers = cross.held_models(decoder.placed, plan, decoder.mesh, lms=False)[1]
        self.clock = cross.Clock()

    def score(self, i: int, rows: list[dict]) -> None:
        """Set ``reward_B`` of prompt ``i``'s rows to the reader's score of their text (a
        `ReaderContextError` names prompt ``i``)."""
        responses = [row["tokens_BN"].tolist() for row in rows]
        scores = cross.score_texts(self.codecs, self.readers, [i] * len(rows), responses,
                                   clock=self.clock)
        for row, score in zip(rows, scores):
            row["reward_B"] = np.float32(score)

    def diagnostics(self) -> dict:
        return dict(cross_seconds=dict(self.clock.seconds), reader_tokens=self.clock.reader_tokens)
