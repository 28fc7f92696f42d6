"""Decoding written against PyTorch `transformers` models: one sequence at a time, no padding.

Each reward is ``model(input_ids).logits[0, 0]`` of the whole sequence, so transformers itself
decides where the score is read; each next-token distribution is a full forward of the whole
prefix. Greedy TQ* (and ARGS, H = 0) as in docs/design.md: top-k of π_sft, greedy rollouts from the
rollout model that end at any stop id, Q̂ = the reward of ``[s, z, τ]``, argmax of
``log π_sft(z) + α·Q̂(z)``.
"""

from __future__ import annotations

import numpy as np
import torch


class HF:
    """Whole-sequence access to transformers models, with a log of what was scored."""

    def __init__(self, sft, baseline=None, reward=None):
        self.models = dict(sft=sft, baseline=baseline, reward=reward)
        self.scored = []     # every sequence given to `score`

    @torch.no_grad()
    def logp(self, role, seq):
        logits = self.models[role](torch.tensor([seq])).logits[0, -1].double()
        return torch.log_softmax(logits, -1).numpy()

    @torch.no_grad()
    def score(self, seq):
        self.scored.append(list(seq))
        return float(self.models["reward"](torch.tensor([seq])).logits[0, 0])


def tq(hf: HF, prompt, k, horizon, alpha, max_new, stop, rollout_role="baseline"):
    """Greedy TQ* (``horizon=0``: ARGS): ``(tokens, q per step, reward of prompt + response)``."""
    seq, qs = list(prompt), []
    for _ in range(max_new):
        lp = hf.logp("sft", seq)
        cand = [int(z) for z in np.argsort(-lp, kind="stable")[:k]]
        q = []
        for z in cand:
            roll = [z]
            while len(roll) <= horizon and roll[-1] not in stop:
                roll.append(int(np.argmax(hf.logp(rollout_role, seq + roll))))
            q.append(hf.score(seq + roll))
        qs.append(q)
        tok = cand[int(np.argmax(lp[cand] + alpha * np.array(q)))]
        seq.append(tok)
        if tok in stop:
            break
    return seq[len(prompt):], qs, hf.score(seq)


def greedy(hf: HF, prompt, max_new, stop):
    """Plain greedy decoding of the SFT model, ending at any stop id (EOS included)."""
    seq = list(prompt)
    for _ in range(max_new):
        seq.append(int(np.argmax(hf.logp("sft", seq))))
        if seq[-1] in stop:
            break
    return seq[len(prompt):]
