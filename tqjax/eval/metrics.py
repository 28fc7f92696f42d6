"""Evaluation metrics of this line of work: diversity, coherence, win rates, summaries."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tqjax.api.decode import prompt_ids
from tqjax.api.models import reward as reward_scores


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


def perplexity(logp_P, lengths_P) -> np.ndarray:
    """Per response ``[P]``: ``exp(−Σ_t log π(y_t | prompt, y_<t) / tokens)``, its perplexity under a
    model (fluency under the SFT model from `tqjax.DecodeOutput.logp_sft`); NaN for an empty one.

    ``logp_P``: each response's summed log-probability; ``lengths_P``: its tokens (EOS included
    when produced, as the sum is)."""
    logp, lengths = np.asarray(logp_P, np.float64), np.asarray(lengths_P, np.float64)
    if logp.shape != lengths.shape or logp.ndim != 1:
        raise ValueError(f"logp and lengths must be two [P] arrays, got shapes {logp.shape} and {lengths.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(lengths > 0, np.exp(-logp / np.maximum(lengths, 1)), np.nan)


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


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions), 0-based."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def rank_agreement(scores_P, gold_P) -> dict:
    """How well a reward model's scores ``[P]`` order responses as their gold rewards ``[P]`` do.

    ``spearman``: the rank correlation (average ranks for ties; NaN when either side is constant).
    ``pairwise_accuracy``: over every two responses whose gold rewards differ, the share the scores
    order the same way (a score tie counts half); ``pairs`` is how many such pairs there are.
    """
    s, g = np.asarray(scores_P, np.float64), np.asarray(gold_P, np.float64)
    if s.shape != g.shape or s.ndim != 1:
        raise ValueError(f"scores and gold rewards must be two [P] arrays, got shapes {s.shape} and {g.shape}")
    rs, rg = _ranks(s), _ranks(g)
    rs, rg = rs - rs.mean(), rg - rg.mean()
    denom = np.sqrt((rs ** 2).sum() * (rg ** 2).sum())
    spearman = float((rs * rg).sum() / denom) if denom > 0 else float("nan")
    i, j = np.triu_indices(len(s), 1)
    dg, ds = np.sign(g[i] - g[j]), np.sign(s[i] - s[j])
    keep = dg != 0
    pairs = int(keep.sum())
    agree = np.where(ds[keep] == 0, 0.5, (ds[keep] == dg[keep]).astype(np.float64))
    return {"spearman": spearman, "pairwise_accuracy": float(agree.mean()) if pairs else float("nan"), "pairs": pairs}


def prompt_response_ids(tokenizer, prompts, responses) -> list[list[int]]:
    """Token ids of each prompt (as `tqjax.decode` tokenises it) followed by its response's ids."""
    return [list(prompt_ids(tokenizer, p, i)) + list(r) for i, (p, r) in enumerate(zip(prompts, responses))]


def pad_rows(seqs: list[list[int]], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded ``tokens_NT`` int32 and ``lengths_N`` int32 of token id lists."""
    tokens_NT = np.full((len(seqs), length), pad_id, np.int32)
    for i, s in enumerate(seqs):
        if len(s) > length:
            raise ValueError(f"sequence {i} has {len(s)} tokens, more than the padded length {length}")
        tokens_NT[i, :len(s)] = s
    return tokens_NT, np.asarray([len(s) for s in seqs], np.int32)


def reader_ids(rm, tokenizer, prompts: Sequence[str], responses: Sequence[Sequence[int]]) -> list[list[int]]:
    """The ids ``rm`` reads of each prompt + response (SFT ids, by ``tokenizer``): those ids
    themselves, or, for a reward model with a tokenizer of its own, its ids of their text, as
    `tqjax.decode` makes them (`tqjax.decoding.text_reader.TextCodec`)."""
    from tqjax.decoding.text_reader import TextCodec, same_tokenizer

    own = getattr(rm, "tokenizer", None)
    if own is None or tokenizer is None or same_tokenizer(tokenizer, own):
        return prompt_response_ids(tokenizer, prompts, responses)
    ids = [list(prompt_ids(tokenizer, p, i)) for i, p in enumerate(prompts)]
    codec = TextCodec("reward", tokenizer, own, list(prompts), ids, rm.max_length)
    rows = range(len(prompts))
    encodings = codec.encode(rows, [list(map(int, r)) for r in responses])
    codec.check(rows, encodings)
    return encodings


def rm_scores(rm, tokenizer, prompts: Sequence[str], responses: Sequence[Sequence[int]],
              batch_size: int = 128) -> np.ndarray:
    """float64 ``[P]``: the reward model's score of each prompt + response (`tqjax.reward`),
    read as `reader_ids` gives them (a reward model with its own tokenizer reads the text)."""
    seqs = reader_ids(rm, tokenizer, prompts, responses)
    own = getattr(rm, "tokenizer", None)
    pad_id = own.pad_token_id if own is not None and own.pad_token_id is not None else tokenizer.pad_token_id
    width = 1 << int(max(len(s) for s in seqs) - 1).bit_length()
    out = []
    for lo in range(0, len(seqs), batch_size):
        chunk = seqs[lo:lo + batch_size]
        chunk = chunk + [chunk[0]] * (batch_size - len(chunk))   # one shape for every batch
        tokens_BT, lengths_B = pad_rows(chunk, width, pad_id)
        out.append(np.asarray(reward_scores(rm, tokens_BT, lengths_B), np.float64)[:min(batch_size, len(seqs) - lo)])
    return np.concatenate(out)
