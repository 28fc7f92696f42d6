"""Tokenise texts and preference pairs into right-padded arrays with loss masks.

Every array set is a plain ``dict`` of numpy arrays with a leading example axis ``N``, so that the
training loop can take a batch with one fancy index. Conventions (T = padded length):

- ``tokens_NT`` int32, right-padded with the pad id; row ``n`` holds ``<bos>`` + words.
- ``lengths_N`` int32, the number of real tokens (``<bos>`` included).
- ``mask_NT`` float32, 1 where the token is a *target* of the loss (a response token for
  prompt/response data, every token after ``<bos>`` for plain texts). Token ``t`` is predicted by
  the logits at ``t - 1``, so ``mask_NT[:, 0]`` is always 0.

Pairs carry the same three arrays twice, with the prefixes ``chosen_`` and ``rejected_``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tqjax.world import Pair


def _encode(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    return tokenizer(list(texts), add_special_tokens=True)["input_ids"]


def _pad(ids: list[list[int]], starts: Sequence[int], length: int, pad_id: int) -> dict:
    n = len(ids)
    tokens_NT = np.full((n, length), pad_id, np.int32)
    mask_NT = np.zeros((n, length), np.float32)
    lengths_N = np.zeros((n,), np.int32)
    for i, (row, start) in enumerate(zip(ids, starts)):
        if len(row) > length:
            raise ValueError(f"example {i} has {len(row)} tokens, more than the padded length {length}")
        tokens_NT[i, :len(row)] = row
        mask_NT[i, max(start, 1):len(row)] = 1.0
        lengths_N[i] = len(row)
    return {"tokens_NT": tokens_NT, "mask_NT": mask_NT, "lengths_N": lengths_N}


def text_arrays(tokenizer, texts: Sequence[str], length: int) -> dict:
    """Full texts for next-token training: the loss covers every token after ``<bos>``.

    Returns ``tokens_NT`` int32, ``mask_NT`` float32 and ``lengths_N`` int32 (see module doc).
    """
    ids = _encode(tokenizer, texts)
    return _pad(ids, [1] * len(ids), length, tokenizer.pad_token_id)


def response_arrays(tokenizer, prompts: Sequence[str], responses: Sequence[str], length: int) -> dict:
    """``prompt + " " + response`` with the loss mask over the response tokens only.

    The word-level tokenizer maps each word to one token, so the response starts right after
    the prompt's tokens. Returns ``tokens_NT``, ``mask_NT``, ``lengths_N``.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    prompt_ids = _encode(tokenizer, prompts)
    ids = _encode(tokenizer, [f"{p} {r}" for p, r in zip(prompts, responses)])
    for i, (p, full) in enumerate(zip(prompt_ids, ids)):
        if full[:len(p)] != p:
            raise ValueError(f"example {i}: the prompt's tokens are not a prefix of prompt + response")
    return _pad(ids, [len(p) for p in prompt_ids], length, tokenizer.pad_token_id)


def pair_arrays(tokenizer, pairs: Sequence[Pair], length: int) -> dict:
    """Preference pairs as ``chosen_*`` and ``rejected_*`` arrays (response-only loss masks)."""
    prompts = [p.prompt for p in pairs]
    out = {}
    for side in ("chosen", "rejected"):
        arrays = response_arrays(tokenizer, prompts, [getattr(p, side) for p in pairs], length)
        out.update({f"{side}_{k}": v for k, v in arrays.items()})
    return out


def size(arrays: dict) -> int:
    """The number of examples N (the common leading dimension)."""
    sizes = {v.shape[0] for v in arrays.values()}
    if len(sizes) != 1:
        raise ValueError(f"arrays disagree on the number of examples: {sorted(sizes)}")
    return sizes.pop()


def reader_texts(tokenizer, prompts: Sequence[str], responses: Sequence[str]) -> list[str]:
    """What a reader with its own tokenizer reads of ``prompt + " " + response``: the SFT ids
    decoded without special tokens (`tqjax.decoding.text_reader`, the text round trip)."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    return tokenizer.batch_decode(_encode(tokenizer, [f"{p} {r}" for p, r in zip(prompts, responses)]),
                                  skip_special_tokens=True)


def reader_pair_arrays(tokenizer, reader_tokenizer, pairs: Sequence[Pair], length: int) -> dict:
    """Preference pairs as a reader with its own tokenizer reads them: each side's `reader_texts`
    encoded by ``reader_tokenizer`` (its special tokens added), as ``chosen_*`` / ``rejected_*``
    arrays like `pair_arrays` (the masks cover every token after the first)."""
    prompts = [p.prompt for p in pairs]
    out = {}
    for side in ("chosen", "rejected"):
        ids = _encode(reader_tokenizer, reader_texts(tokenizer, prompts, [getattr(p, side) for p in pairs]))
        arrays = _pad(ids, [1] * len(ids), length, reader_tokenizer.pad_token_id)
        out.update({f"{side}_{k}": v for k, v in arrays.items()})
    return out
