"""A slow, obviously-correct decoder: plain Python/NumPy on whole sequences, no caches.

Every quantity is recomputed from the full token sequence with ``next_logits(role, seq)`` (the
next-token logits after ``seq``) and ``score(role, seq)`` (the reward of ``seq`` at its last
token), following docs/design.md line by line. Random draws use the engine's documented key scheme
(`tqjax.decoding.sampler`): ``step = fold_in(prompt_key, t)``; selection and plain sampling
``fold_in(step, 0)``; rollout token ``h`` of candidate ``c``, rollout ``m``:
``fold_in(fold_in(fold_in(step, 1 + c), m), h)``; best-of-N sample ``j``: prompt key
``fold_in(prompt_key, j)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import tqjax


def log_softmax(x):
    x = np.asarray(x, np.float64)
    finite = x[np.isfinite(x)]
    m = finite.max() if finite.size else 0.0
    return x - m - np.log(np.sum(np.exp(x - m)))


def draw(key, logits):
    return int(jax.random.categorical(key, jnp.asarray(logits, jnp.float32)))


def fold(key, *path):
    for value in path:
        key = jax.random.fold_in(key, value)
    return key


@jax.jit
def _forward(model, tokens_BT):
    """Raw head outputs of a whole sequence (jitted once per shape: an eager call re-lowers the
    layer scan and reads it back from the persistent compilation cache every time)."""
    return model.forward(tokens_BT)


class Fns:
    """Whole-sequence access to the models of a `TQParams`."""

    def __init__(self, params, pad_to=None):
        self.params, self.pad_to = params, pad_to
        self.calls = 0

    def next_logits(self, role, seq):
        model = getattr(self.params, role)
        self.calls += 1
        if hasattr(model, "next_logits"):            # the enumerable toy
            return model.next_logits(seq)
        T = self.pad_to or len(seq)
        tokens = np.zeros((1, T), np.int32)
        tokens[0, :len(seq)] = seq
        return np.asarray(tqjax.logits(model, tokens)[0, len(seq) - 1], np.float64)

    def score(self, role, seq):
        """The reward of ``seq`` read as transformers reads it: the raw score at the rightmost
        token that is not the reward model's ``pad_token_id`` (the last one if it has none, the
        first one if every token is the pad id)."""
        model = getattr(self.params, role)
        self.calls += 1
        if hasattr(model, "next_logits"):
            return model.score(seq)
        T = self.pad_to or len(seq)
        tokens = np.zeros((1, T), np.int32)
        tokens[0, :len(seq)] = seq
        raw = np.asarray(_forward(model, tokens)[0], np.float64)
        pad = model.config.pad_token_id
        real = [i for i, t in enumerate(seq) if t != pad]
        return float(raw[real[-1] if real else 0])


def filter_np(logits, temperature, top_k, top_p):
    x = np.asarray(logits, np.float64) / temperature
    if 0 < top_k < x.size:
        x = np.where(x < np.sort(x)[::-1][top_k - 1], -np.inf, x)
    if top_p < 1:
        order = np.argsort(-x, kind="stable")
        p = np.exp(log_softmax(x[order]))
        keep = (np.cumsum(p) - p) < top_p
        cutoff = x[order][keep].min()
        x = np.where(x < cutoff, -np.inf, x)
    return x


def plain(fns, prompt, cfg, key, eos, role):
    seq, out = list(prompt), []
    logp_sft = kl = ratio = 0.0
    for t in range(cfg.max_new_tokens):
        lp_sft = log_softmax(fns.next_logits("sft", seq))
        logits = fns.next_logits(role, seq)
        if cfg.temperature == 0:
            tok = int(np.argmax(logits))
        else:
            tok = draw(fold(key, t, 0), filter_np(logits, cfg.temperature, cfg.top_k, cfg.top_p))
        if role != "sft":
            lp = log_softmax(logits)
            kl += float(np.sum(np.exp(lp) * (lp - lp_sft)))
            ratio += lp[tok] - lp_sft[tok]
        logp_sft += lp_sft[tok]
        seq.append(tok)
        out.append(tok)
        if tok in eos and not cfg.ignore_eos:
            break
    reward = fns.score("reward", seq) if fns.params.reward is not None else None
    return dict(tokens=out, reward=reward, logp_sft=logp_sft, kl=kl, log_ratio=ratio)


def rollout_value(fns, seq, z, cfg, key_c, eos, stats):
    """Q̂ of candidate z: M rollouts of up to H tokens after [seq, z], stopping at EOS."""
    H = 0 if cfg.method == "args" else cfg.horizon
    M = 1 if cfg.method == "args" else cfg.rollouts
    role = "baseline" if cfg.method == "tq" else "sft"
    rs, logws = [], []
    for m in range(M):
        roll = [z]
        while len(roll) <= H and roll[-1] not in eos:
            logits = fns.next_logits(role, seq + roll)
            if cfg.rollout_temperature == 0:
                tok = int(np.argmax(logits))
            else:
                tok = draw(fold(key_c, m, len(roll)), np.asarray(logits) / cfg.rollout_temperature)
            roll.append(tok)
        stats["eos_rollouts"] += roll[-1] in eos
        r = fns.score("reward", seq + roll)
        if cfg.transfer == "indirect":
            if fns.params.baseline_reward is not None:
                r_bl = fns.score("baseline_reward", seq + roll)
            else:
                gap = sum(log_softmax(fns.next_logits("baseline", seq + roll[:i]))[roll[i]]
                          - log_softmax(fns.next_logits("sft", seq + roll[:i]))[roll[i]]
                          for i in range(len(roll)))
                r_bl = cfg.beta * gap
            logws.append((r - r_bl) / cfg.beta)
        rs.append(r)
    rs, logws = np.array(rs), np.array(logws)
    if cfg.transfer == "direct":
        return rs.mean()
    if cfg.weights == "normalized":
        w = np.exp(logws - logws.max())
        return float(np.sum(w / w.sum() * rs))
    return float(np.mean(np.exp(logws) * rs))


def tq(fns, prompt, cfg, key, eos, stats):
    seq, out, ranks, qs = list(prompt), [], [], []
    logp_sft = kl = ratio = 0.0
    for t in range(cfg.max_new_tokens):
        lp_sft = log_softmax(fns.next_logits("sft", seq))
        prior = lp_sft if cfg.proposal == "sft" else log_softmax(fns.next_logits("baseline", seq))
        cand = [int(i) for i in np.argsort(-prior, kind="stable")[:cfg.k]]
        q = np.array([rollout_value(fns, seq, z, cfg, fold(key, t, 1 + c), eos, stats)
                      for c, z in enumerate(cand)])
        score = prior[cand] + cfg.alpha * q
        score = np.where(np.isfinite(q) & np.isfinite(score), score, -np.inf)
        if np.all(score == -np.inf):
            tok, rank = int(np.argmax(lp_sft)), -1
            stats["fallbacks"] += 1
        else:
            if cfg.select == "greedy":
                rank = int(np.argmax(score))
            else:
                rank = draw(fold(key, t, 0), score)
            tok = cand[rank]
            la = log_softmax(score)
            ls = log_softmax(lp_sft[cand])
            pa = np.exp(la)
            kl += float(np.sum(pa[pa > 0] * (la - ls)[pa > 0]))
            ratio += la[rank] - ls[rank]
        stats["nonfinite"] += int(np.sum(~np.isfinite(q)))
        ranks.append(rank)
        qs.append(q)
        logp_sft += lp_sft[tok]
        seq.append(tok)
        out.append(tok)
        if tok in eos and not cfg.ignore_eos:
            break
    return dict(tokens=out, reward=fns.score("reward", seq), logp_sft=logp_sft, kl=kl,
                log_ratio=ratio, rank=ranks, q=qs)


def stop_set(params, cfg):
    """Every id that ends a row or a rollout: the policies' EOS ids (the baseline's when it is
    used) and the config's extra stop ids."""
    ids = set(params.sft.stop_token_ids) | set(cfg.stop_token_ids)
    uses_baseline = cfg.method in ("tq", "baseline") or (cfg.method in ("cd", "args", "bon")
                                                         and cfg.proposal == "baseline")
    if uses_baseline and params.baseline is not None:
        ids |= set(params.baseline.stop_token_ids)
    return ids


def decode(params, prompts, cfg, pad_to=None):
    """Per prompt dicts: tokens, reward, logp_sft, kl, log_ratio (+ rank, q for tq/cd/args)."""
    fns = Fns(params, pad_to)
    eos = stop_set(params, cfg)
    stats = dict(eos_rollouts=0, fallbacks=0, nonfinite=0)
    results = []
    for i, prompt in enumerate(prompts):
        key = jax.random.fold_in(jax.random.key(cfg.seed), i)
        if cfg.method in ("tq", "cd", "args"):
            results.append(tq(fns, list(prompt), cfg, key, eos, stats))
        elif cfg.method == "bon":
            role = "baseline" if cfg.proposal == "baseline" else "sft"
            samples = [plain(fns, prompt, cfg, jax.random.fold_in(key, j), eos, role)
                       for j in range(cfg.n)]
            rewards = np.array([s["reward"] for s in samples])
            results.append(samples[int(np.argmax(np.where(np.isfinite(rewards), rewards, -np.inf)))])
        else:
            results.append(plain(fns, prompt, cfg, key, eos, cfg.method))
    return results, stats
