"""Evaluation metrics of this line of work: diversity, coherence, win rates, summaries."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def diversity(words: list[str]) -> float:
    """ARGS diversity: Π_{n=2..4} (1 − rep_n), rep_n = 1 − unique n-grams / n-grams (1 = no repeats)."""
    score = 1.0
    for n in (2, 3, 4):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        if grams:
            score *= len(set(grams)) / len(grams)
    return score


@jax.jit
def _pooled(model, tokens_BT, lengths_B):
    h_BTD = model.hidden_states(tokens_BT).astype(jnp.float32)
    mask_BT = (jnp.arange(tokens_BT.shape[1])[None] < lengths_B[:, None]).astype(jnp.float32)
    return (h_BTD * mask_BT[..., None]).sum(1) / jnp.maximum(mask_BT.sum(1, keepdims=True), 1.0)


def _pad(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([max(len(s), 1) for s in seqs], np.int32)
    width = 1 << int(lengths.max() - 1).bit_length()
    out = np.zeros((len(seqs), width), np.int32)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, lengths


def coherence(sft, prompts: list[list[int]], responses: list[list[int]]) -> np.ndarray:
    """Cosine similarity of the mean-pooled SFT final hidden states of each prompt and its response.

    This stands in for the SimCSE encoder of the ARGS/TQ* papers when no sentence encoder is given
    (`tqjax.eval.encoder` computes the real metric); `tqjax eval` labels it "coherence (SFT stand-in)".
    """
    p = np.asarray(_pooled(sft, *map(jnp.asarray, _pad(prompts))))
    r = np.asarray(_pooled(sft, *map(jnp.asarray, _pad([s or [0] for s in responses]))))
    return (p * r).sum(-1) / np.maximum(np.linalg.norm(p, axis=-1) * np.linalg.norm(r, axis=-1), 1e-9)


def win_indicators(scores: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt ``[P]``: win (1, a tie ½, a loss 0) and win-tie (1 for a win or a tie) against ``reference``."""
    scores, reference = np.asarray(scores, np.float64), np.asarray(reference, np.float64)
    wins, ties = scores > reference + 1e-9, np.abs(scores - reference) <= 1e-9
    return wins + 0.5 * ties, (wins | ties).astype(np.float64)


def win_rates(scores: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(win rate, win-tie rate) of ``scores`` against ``reference``, prompt by prompt.

    Win rate counts a tie as half a win; win-tie counts it as a win (the papers' "win-tie").
    """
    win, win_tie = win_indicators(scores, reference)
    return float(win.mean()), float(win_tie.mean())
