"""Coherence with a sentence encoder: the cosine of the prompt's and the response's embeddings.

This is the metric of the ARGS / TQ* papers (they use a SimCSE BERT). Without an encoder `tqjax
eval` falls back to `tqjax.eval.metrics.coherence`, a stand-in on the SFT model's hidden states.
"""

from __future__ import annotations

import jax
import numpy as np

from tqjax.models.bert import Encoder


@jax.jit
def _embed(encoder: Encoder, tokens_BT, mask_BT):
    return encoder.embed(tokens_BT, mask_BT)


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def sentence_embeddings(encoder: Encoder, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """float32 embeddings ``[len(texts), D]``; batches and lengths are bucketed to powers of two."""
    if encoder.tokenizer is None:
        raise ValueError("the encoder has no tokenizer; load it with tqjax.io.hf_bert.load_bert")
    model = encoder.replace(tokenizer=None)
    out = []
    for lo in range(0, len(texts), batch_size):
        chunk = [t.lower() if encoder.lowercase else t for t in texts[lo:lo + batch_size]]
        ids = encoder.tokenizer(chunk, truncation=True, max_length=encoder.max_length)["input_ids"]
        width = min(_pow2(max(len(s) for s in ids)), encoder.config.max_positions)
        tokens_BT = np.zeros((_pow2(len(ids)), width), np.int32)
        mask_BT = np.zeros_like(tokens_BT)
        for i, s in enumerate(ids):
            tokens_BT[i, :len(s)], mask_BT[i, :len(s)] = s, 1
        out.append(np.asarray(_embed(model, tokens_BT, mask_BT))[:len(ids)])
    return np.concatenate(out) if out else np.zeros((0, encoder.config.d_model), np.float32)


def cosine(a_BD: np.ndarray, b_BD: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity ``[B]``."""
    norms = np.linalg.norm(a_BD, axis=-1) * np.linalg.norm(b_BD, axis=-1)
    return (a_BD * b_BD).sum(-1) / np.maximum(norms, 1e-9)


def encoder_coherence(encoder: Encoder, prompts: list[str], responses: list[str]) -> np.ndarray:
    """Per prompt ``[P]``: cosine of the encoder's embeddings of the prompt and of its response."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    return cosine(sentence_embeddings(encoder, prompts), sentence_embeddings(encoder, responses))
