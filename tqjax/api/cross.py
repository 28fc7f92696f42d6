"""`tqjax.decode` when a reader has its own tokenizer: checks that need the prompts, then the text
round-trip engine (`tqjax.decoding.cross`), unpacked into a `DecodeOutput`."""

from __future__ import annotations

import numpy as np

from tqjax.decoding import cross
from tqjax.decoding.decode_plan import Knobs


def decode_text(params, prompts, config, arrays, token_lists, plan, roles, mesh):
    """Decode with the readers ``roles`` reading text (docs/design.md, "Readers with their own
    tokenizer"). Prompts whose own text is already longer than a reader's context are refused
    here, before any decoding, naming the prompt."""
    from tqjax.api.decode import DecodeOutput, _text

    if mesh is not None:
        raise ValueError(f"a device mesh is not supported with readers that have their own "
                         f"tokenizer ({', '.join(roles)}); decode without mesh=")
    codecs = cross.make_codecs(params, roles, list(prompts), token_lists, plan)
    knobs = Knobs.from_config(config)
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
    return DecodeOutput(tokens=out["tokens"], texts=[_text(tokenizer, ids) for ids in out["tokens"]],
                        rewards=rewards, logp_sft=out["logp_sft_B"], kl=out["kl_B"],
                        log_ratio=out["log_ratio_B"], diagnostics=diagnostics)
