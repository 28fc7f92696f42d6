"""`tqjax.decode`: decode a list of prompts with a method (`tqjax.api.decoder.Decoder`)."""

from __future__ import annotations

from tqjax.api.checks import check_decode, check_instance
from tqjax.api.decoder import Decoder
from tqjax.api.inputs import prepare, prompt_ids
from tqjax.api.outputs import DecodeOutput
from tqjax.api.params import TQParams
from tqjax.decoding.config import DecodeConfig

__all__ = ["Decoder", "DecodeOutput", "TQParams", "decode", "prepare", "prompt_ids"]


def decode(params: TQParams, prompts, config: DecodeConfig = DecodeConfig(), batch_size=None, *,
           indices=None, mesh=None, chunk=None, on_done=None, on_error=None,
           stats=None) -> DecodeOutput:
    """Decode every prompt with ``config.method`` (docs/design.md, "Algorithm").

    prompts: strings (tokenised with ``params.sft.tokenizer``) or token-id sequences.
    batch_size: None decodes all prompts as one batch, which runs until its longest row ends. An
    int ``B`` is continuous batching (`tqjax.decoding.continuous`): at most ``B`` prompts in
    flight (best-of-N: ``B·n`` rows), and as rows finish the next prompts are prefilled into their
    slots; each prompt's result is the same as decoding it alone. ``0``: the memory planner picks
    the largest ``B`` that fits this device. indices: optional ints folded into each prompt's key
    instead of its list position (a job split over batches or hosts passes global prompt numbers so
    that outputs do not depend on the split). mesh: a ``("data", "model")`` mesh
    (`tqjax.make_mesh`): params are placed by the sharding rules (tensor parallel over "model"),
    prompts split over "data" (the batch is padded to a multiple of it). The output does not
    depend on the mesh. With ``batch_size``: chunk, the most steps between two visits of the host
    (default ``max_new_tokens``; a chunk also ends when a row finishes while prompts wait);
    on_done(i, output) is called with prompt ``i``'s `DecodeOutput` of one prompt as soon as it
    is done; stats: a `tqjax.decoding.continuous.Stats` to fill. With a reader that has its own
    tokenizer, a prompt whose text outgrows the reader's context during decoding raises a
    `tqjax.ReaderContextError` naming it; with ``batch_size``, on_error(i, error) takes it instead
    and the other prompts are decoded as if it were not there (`tqjax.api.cross`,
    ``diagnostics["failed"]``). With such a reader the candidate methods refill slots too
    (`tqjax.decoding.cross_rows`: the host visits every step, so ``chunk`` does not apply); the
    plain methods and best-of-N sample under the fused engine's continuous batching and the reader
    reads each prompt's responses as they finish. on_done and on_error must take two positional
    arguments.

    Every argument is checked before any model is placed or program compiled
    (`tqjax.api.checks`): a TypeError or ValueError names the argument. To decode several lists
    with the same models, build a `Decoder` once: its params are placed once.
    """
    check_instance("params", params, TQParams, "a tqjax.TQParams")
    check_instance("config", config, DecodeConfig, "a tqjax.DecodeConfig")
    check_decode(prompts, batch_size, indices, mesh, chunk, on_done, on_error, stats)
    return Decoder(params, config, mesh).run(prompts, batch_size, indices=indices, chunk=chunk,
                                             on_done=on_done, on_error=on_error, stats=stats)
