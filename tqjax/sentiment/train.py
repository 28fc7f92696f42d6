"""Training of the real task's models (issue 22): the reward model r, the judge, the DPO baseline.

`train` runs the stages into ``CACHE/sentiment/checkpoints`` and records every figure, setting and
wall time in ``train.json`` there (`CheckpointPaths`). A stage whose output exists is skipped; a
stage cut short resumes from the training loop's orbax checkpoints under ``work/``.

- **reward**: r keeps SmolLM2's first ``reward_layers`` blocks and gets a scalar head
  (`reward_model.from_lm`); its top ``reward_top`` blocks, final norm and head are trained with the
  logistic loss on the sentences' labels, from stored features of the frozen blocks below
  (`tqjax.train.top`). The head starts from a linear probe of the untrained top's last-token
  hidden states (`reward_model.fit_head`, its L2 weight chosen on the validation sentences). The
  score is the head at a text's last token, where `tqjax.reward` and the decoders read it. The
  step count is chosen on the validation sentences (the best of ``reward_evals`` evenly spaced
  checkpoints).
- **judge**: `tqjax.sentiment.judge` on the full reviews, its L2 weight chosen on the validation reviews.
- **dpo**: two SFT samples per training review prefix, ordered by r, and DPO of the SFT model's
  top ``dpo_top`` blocks and final norm (the tied embedding frozen), again from stored features.
  r before and after and the KL from SFT are measured on validation prefixes with `tqjax.decode`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tqjax.api.decode import TQParams, decode, prompt_ids
from tqjax.api.models import load, save
from tqjax.decoding.config import DecodeConfig
from tqjax.models import Model
from tqjax.models.transformer import head
from tqjax.sentiment import judge as judge_lib
from tqjax.sentiment.data import detokenize, read_splits, review_prompts
from tqjax.sentiment.setup import SentimentPaths
from tqjax.train import dpo, loop, reward_model, top
from tqjax.train.loop import TrainConfig

STAGES = ("reward", "judge", "dpo")


class CacheNotReadyError(FileNotFoundError):
    """The cache lacks the model or the data that `tqjax sentiment setup` puts there."""


@dataclasses.dataclass(frozen=True)
class TrainRecipe:
    """Sizes and hyper-parameters of the three stages (module doc)."""

    seed: int = 22
    reward_layers: int = 18                   # the best last-token probe depth (docs/sentiment.md)
    reward_top: int = 6
    reward_sentences: int | None = None      # training sentences used (None: all 3,200)
    reward_probe_l2: tuple[float, ...] = (1e-4, 1e-3, 1e-2)   # the head's start: () for a random one
    reward: TrainConfig = TrainConfig(steps=400, batch_size=16, learning_rate=1e-4, warmup_steps=20,
                                      weight_decay=0.0, checkpoint_every=100)
    reward_evals: int = 4
    review_tokens: int = 96                   # r reads a review's last tokens
    judge_bits: int = 16
    judge_l2: tuple[float, ...] = (1e-5, 1e-4, 1e-3)
    judge_steps: int = 300
    dpo_prefixes: int = 64
    dpo_new_tokens: int = 24
    dpo_top: int = 2
    beta: float = 0.1
    dpo: TrainConfig = TrainConfig(steps=24, batch_size=8, learning_rate=1e-4, warmup_steps=3,
                                   weight_decay=0.0, checkpoint_every=10)
    eval_prefixes: int = 32
    decode_batch: int = 64


@dataclasses.dataclass(frozen=True)
class CheckpointPaths:
    """Where the trained models go: ``CACHE/sentiment/checkpoints/{reward, baseline, judge}``,
    ``train.json``, and ``work/`` (features and the loop's resumable checkpoints)."""

    cache: str

    @property
    def root(self) -> str:
        return os.path.join(SentimentPaths(self.cache).root, "checkpoints")

    @property
    def reward(self) -> str:
        return os.path.join(self.root, "reward")

    @property
    def baseline(self) -> str:
        return os.path.join(self.root, "baseline")

    @property
    def judge(self) -> str:
        return os.path.join(self.root, "judge")

    @property
    def work(self) -> str:
        return os.path.join(self.root, "work")

    @property
    def record(self) -> str:
        return os.path.join(self.root, "train.json")


def check_cache(cache: str) -> SentimentPaths:
    """The task's paths; `CacheNotReadyError` names what is missing and the command that fetches it."""
    paths = SentimentPaths(cache)
    needed = (paths.checkpoint, paths.sentences_csv, paths.reviews_csv)
    missing = [p for p in needed if not os.path.exists(p)]
    if missing:
        raise CacheNotReadyError(f"the real task is not set up in {paths.root}: missing {', '.join(missing)}; "
                                 f"run `tqjax sentiment setup --cache {cache}` first")
    return paths


def _encode(tokenizer, texts: Sequence[str], keep_last: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded ids ``[N, T]`` and lengths ``[N]`` of texts as `tqjax.decode` tokenises a prompt."""
    ids = [list(prompt_ids(tokenizer, t))[-keep_last:] if keep_last else list(prompt_ids(tokenizer, t)) for t in texts]
    return _pad(ids, tokenizer.pad_token_id)


def _pad(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    lengths_N = np.asarray([len(r) for r in ids], np.int32)
    tokens_NT = np.full((len(ids), int(lengths_N.max())), pad_id, np.int32)
    for i, r in enumerate(ids):
        tokens_NT[i, :len(r)] = r
    return tokens_NT, lengths_N


def _cached(path: str, make: Callable[[], dict]) -> dict:
    """The arrays saved at ``path`` (numbers only, no text), or ``make()``'s, saved there first."""
    if os.path.exists(path):
        with np.load(path) as z:
            return dict(z)
    arrays = make()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path + ".tmp.npz", **arrays)
    os.replace(path + ".tmp.npz", path)
    return arrays


# -- reward model --------------------------------------------------------------------------------

def _last_scores(config, first, params, batch):
    scores_BT = head(config, params, top.hidden(config, params, batch["x_NTD"], first))
    return jnp.take_along_axis(scores_BT, (batch["lengths_N"] - 1)[:, None], axis=1)[:, 0]


def _reward_loss(config, first, params, batch, key):
    return reward_model.logistic_loss(_last_scores(config, first, params, batch), batch["labels_N"])


def reward_arrays(rm: Model, first: int, texts: Sequence[str], labels: Sequence[int], keep_last: int | None = None,
                  desc: str = "features", progress: bool = True) -> dict:
    """``x_NTD`` (`top.features` of ``rm`` below block ``first``), ``lengths_N``, ``labels_N``."""
    tokens_NT, lengths_N = _encode(rm.tokenizer, texts, keep_last)
    x_NTD = top.features(rm, tokens_NT, lengths_N, first, desc=desc, progress=progress)
    return {"x_NTD": x_NTD, "lengths_N": lengths_N, "labels_N": np.asarray(labels, np.int32)}


@functools.lru_cache
def _score_metric(config, first):
    return lambda params, batch: {"s": _last_scores(config, first, params, batch)}


def reward_accuracy(rm: Model, first: int, trained: dict, arrays: dict) -> float:
    """The fraction of ``arrays``' texts whose score has the sign of their label."""
    scores = loop.evaluate(_score_metric(rm.config, first), trained, arrays, 32)["s"]
    return float(np.mean((scores > 0) == (arrays["labels_N"] == 1)))


def truncated_reward(lm: Model, n_layers: int, key: jax.Array) -> Model:
    """`reward_model.from_lm` of ``lm``'s first ``n_layers`` blocks."""
    rm = reward_model.from_lm(lm, key)
    params = {**rm.params, "layers": jax.tree.map(lambda x: x[:n_layers], rm.params["layers"])}
    return rm.replace(params=params, config=rm.config.replace(n_layers=n_layers))


def _texts(examples):
    return [detokenize(e.text.split()) for e in examples], [e.label for e in examples]


def stage_reward(paths: SentimentPaths, out: CheckpointPaths, recipe: TrainRecipe, progress: bool, log) -> dict:
    lm = load(paths.checkpoint)
    rm = truncated_reward(lm, recipe.reward_layers, jax.random.PRNGKey(recipe.seed))
    first = recipe.reward_layers - recipe.reward_top
    sentences, reviews = read_splits(paths.sentences_csv), read_splits(paths.reviews_csv)
    train_set = sentences.train[:recipe.reward_sentences]
    arrays = {name: _cached(os.path.join(out.work, f"reward_{name}.npz"), functools.partial(
        reward_arrays, rm, first, *_texts(split), desc=f"r features: {name}", progress=progress))
              for name, split in (("train", train_set), ("val", sentences.val), ("test", sentences.test))}
    start, probe = top.top(rm.params, first), {}
    if recipe.reward_probe_l2:      # the head starts from a linear probe, its L2 chosen on validation
        h = {name: top.last_hidden(rm.config, start, arrays[name], first) for name in ("train", "val")}
        for l2 in recipe.reward_probe_l2:
            w_D = np.asarray(reward_model.fit_head(h["train"], arrays["train"]["labels_N"], l2))
            probe[l2] = (float(np.mean((h["val"] @ w_D > 0) == (arrays["val"]["labels_N"] == 1))), w_D)
            log(f"r: probe L2 {l2:g}, validation accuracy {probe[l2][0]:.3f}")
        start["score_D"] = jnp.asarray(max(probe.values(), key=lambda v: v[0])[1], start["score_D"].dtype)
    loss_fn = functools.partial(_reward_loss, rm.config, first)
    config, evals = recipe.reward, []
    best = (-1.0, 0, None)
    for k in range(1, recipe.reward_evals + 1):
        stop = round(config.steps * k / recipe.reward_evals)
        result = loop.train(loss_fn, start, arrays["train"], config,
                            os.path.join(out.work, "reward"), stop_at=stop, desc="r", progress=progress)
        accuracy = reward_accuracy(rm, first, result.params, arrays["val"])
        evals.append({"step": stop, "val_accuracy": accuracy})
        log(f"r: step {stop}, validation accuracy {accuracy:.3f}")
        if accuracy > best[0]:
            best = (accuracy, stop, jax.device_get(result.params))
    val_accuracy, step, trained = best
    test_accuracy = reward_accuracy(rm, first, trained, arrays["test"])
    reviews_arrays = reward_arrays(rm, first, *_texts(reviews.test), keep_last=recipe.review_tokens,
                                   desc="r features: test reviews", progress=progress)
    reviews_accuracy = reward_accuracy(rm, first, trained, reviews_arrays)
    model = rm.replace(params=top.merge(rm.params, trained, first))
    save(model, out.reward)
    return {"val_accuracy_by_step": evals, "chosen_step": step, "val_accuracy": val_accuracy,
            "test_sentences_accuracy": test_accuracy, "test_reviews_accuracy": reviews_accuracy,
            "review_tokens": recipe.review_tokens, "layers": recipe.reward_layers, "trained_top": recipe.reward_top,
            "train_sentences": len(train_set), "loss": "logistic on the label", "config": dataclasses.asdict(config),
            "probe_val_accuracy_by_l2": {str(k): v[0] for k, v in probe.items()}}


# -- judge ---------------------------------------------------------------------------------------

def stage_judge(paths: SentimentPaths, out: CheckpointPaths, recipe: TrainRecipe, progress: bool, log) -> dict:
    reviews, sentences = read_splits(paths.reviews_csv), read_splits(paths.sentences_csv)
    texts, labels = _texts(reviews.train)
    by_l2 = {}
    for l2 in recipe.judge_l2:
        j = judge_lib.fit(texts, labels, recipe.judge_bits, l2, recipe.judge_steps)
        by_l2[l2] = (j.accuracy(reviews.val), j)
        log(f"judge: L2 {l2:g}, validation accuracy {by_l2[l2][0]:.3f}")
    l2 = max(by_l2, key=lambda k: by_l2[k][0])
    val_accuracy, j = by_l2[l2]
    record = {"val_reviews_accuracy": val_accuracy, "test_reviews_accuracy": j.accuracy(reviews.test),
              "test_sentences_accuracy": j.accuracy(sentences.test), "l2": l2, "bits": recipe.judge_bits,
              "steps": recipe.judge_steps, "val_accuracy_by_l2": {str(k): v[0] for k, v in by_l2.items()},
              "train_reviews": len(texts)}
    dataclasses.replace(j, meta=record).save(out.judge)
    return record


# -- DPO baseline --------------------------------------------------------------------------------

def sample_pairs(lm: Model, rm: Model, prompts: Sequence[str], new_tokens: int, seed: int, batch: int,
                 progress: bool = True) -> list[tuple[list[int], list[int], list[int]]]:
    """``(prompt ids, chosen ids, rejected ids)`` from two SFT samples (temperature 1) per prompt,
    ordered by r; pairs of identical responses or tied rewards are dropped."""
    from tqdm.auto import tqdm

    config = DecodeConfig(method="sft", temperature=1.0, max_new_tokens=new_tokens, seed=seed)
    doubled = [p for p in prompts for _ in range(2)]
    tokens, rewards = [], []
    for lo in tqdm(range(0, len(doubled), batch), desc="DPO samples", disable=not progress, dynamic_ncols=True):
        hi = min(lo + batch, len(doubled))
        got = decode(TQParams(sft=lm, reward=rm), doubled[lo:hi], config, indices=range(lo, hi))
        tokens += got.tokens
        rewards += list(got.rewards)
    out = []
    for i, prompt in enumerate(prompts):
        (a, ra), (b, rb) = (tokens[2 * i], rewards[2 * i]), (tokens[2 * i + 1], rewards[2 * i + 1])
        if a != b and ra != rb:
            out.append((list(prompt_ids(lm.tokenizer, prompt)), *((a, b) if ra > rb else (b, a))))
    return out


def pair_arrays(triples, pad_id: int) -> dict:
    """``chosen_*`` / ``rejected_*``: ``tokens_NT`` and ``lengths_N`` of prompt + response, and the
    response's ``at_NR`` (positions whose hidden state predicts it), ``targets_NR`` and ``mask_NR``."""
    out = {}
    for j, side in ((1, "chosen"), (2, "rejected")):
        seqs = [t[0] + t[j] for t in triples]
        out[f"{side}_tokens_NT"], out[f"{side}_lengths_N"] = _pad(seqs, pad_id)
        R = max(len(t[j]) for t in triples)
        at, targets, mask = (np.zeros((len(triples), R), d) for d in (np.int32, np.int32, np.float32))
        for i, t in enumerate(triples):
            n = len(t[j])
            at[i, :n] = len(t[0]) - 1 + np.arange(n)
            targets[i, :n], mask[i, :n] = t[j], 1.0
        out[f"{side}_at_NR"], out[f"{side}_targets_NR"], out[f"{side}_mask_NR"] = at, targets, mask
    return out


def _response_logprobs(config, first, params, batch, side):
    h_BTD = top.hidden(config, params, batch[f"{side}_x_NTD"], first)
    h_BRD = jnp.take_along_axis(h_BTD, batch[f"{side}_at_NR"][..., None], axis=1)
    logp_BRV = jax.nn.log_softmax(head(config, params, h_BRD), axis=-1)
    taken_BR = jnp.take_along_axis(logp_BRV, batch[f"{side}_targets_NR"][..., None], axis=-1)[..., 0]
    return jnp.sum(taken_BR * batch[f"{side}_mask_NR"], axis=1)


def _dpo_loss(config, first, beta, params, batch, key):
    return dpo.preference_loss(_response_logprobs(config, first, params, batch, "chosen"),
                               _response_logprobs(config, first, params, batch, "rejected"), batch, beta)


def _dpo_metrics(config, first, params, batch):
    return {side: _response_logprobs(config, first, params, batch, side) for side in ("chosen", "rejected")}


def dpo_features(lm: Model, arrays: dict, first: int, progress: bool = True) -> dict:
    """``arrays`` plus each side's ``x_NTD`` (features below block ``first``) and reference
    log-probs ``*_ref_N`` (the untrained top on them: the SFT model itself)."""
    out = dict(arrays)
    for side in ("chosen", "rejected"):
        out[f"{side}_x_NTD"] = top.features(lm, arrays[f"{side}_tokens_NT"], arrays[f"{side}_lengths_N"], first,
                                            desc=f"DPO features: {side}", progress=progress)
    out["lengths_N"] = np.maximum(out["chosen_lengths_N"], out["rejected_lengths_N"])
    params = {**top.top(lm.params, first), **top.frozen(lm.params)}
    ref = loop.evaluate(functools.partial(_dpo_metrics, lm.config, first), params, out, 16)
    out["chosen_ref_N"], out["rejected_ref_N"] = ref["chosen"], ref["rejected"]
    return {k: v for k, v in out.items() if "tokens_NT" not in k}


def policy_figures(lm: Model, policy: Model, rm: Model, prompts: Sequence[str], recipe: TrainRecipe) -> dict:
    """Mean r of SFT and of ``policy`` samples (temperature 1) on ``prompts``, and the policy's mean
    Σ_t KL(π‖π_sft) per response, from `tqjax.decode`."""
    base = DecodeConfig(temperature=1.0, max_new_tokens=recipe.dpo_new_tokens, seed=recipe.seed + 1)
    sft = decode(TQParams(sft=lm, reward=rm), list(prompts), base.replace(method="sft"))
    aligned = decode(TQParams(sft=lm, baseline=policy, reward=rm), list(prompts), base.replace(method="baseline"))
    return {"prompts": len(prompts), "r_sft": float(np.mean(sft.rewards)), "r_dpo": float(np.mean(aligned.rewards)),
            "kl_dpo": float(np.mean(aligned.kl)), "r_sft_sd": float(np.std(sft.rewards)),
            "r_dpo_sd": float(np.std(aligned.rewards))}


def stage_dpo(paths: SentimentPaths, out: CheckpointPaths, recipe: TrainRecipe, progress: bool, log) -> dict:
    if not os.path.exists(out.reward):
        raise CacheNotReadyError(f"DPO needs the reward model r at {out.reward}; run the reward stage first")
    lm, rm = load(paths.checkpoint), load(out.reward)
    reviews = read_splits(paths.reviews_csv)
    first = lm.config.n_layers - recipe.dpo_top

    def make():
        prompts = review_prompts(reviews.train, recipe.dpo_prefixes)
        triples = sample_pairs(lm, rm, prompts, recipe.dpo_new_tokens, recipe.seed, recipe.decode_batch, progress)
        return dpo_features(lm, pair_arrays(triples, lm.tokenizer.pad_token_id), first, progress)

    arrays = _cached(os.path.join(out.work, "dpo_pairs.npz"), make)
    log(f"DPO: {len(arrays['lengths_N'])} pairs")
    loss_fn = functools.partial(_dpo_loss, lm.config, first, recipe.beta)
    result = loop.train(loss_fn, top.top(lm.params, first), arrays, recipe.dpo, os.path.join(out.work, "dpo"),
                        desc="DPO", progress=progress, frozen=top.frozen(lm.params))
    after = loop.evaluate(functools.partial(_dpo_metrics, lm.config, first), {**result.params, **top.frozen(lm.params)},
                          arrays, 16)
    margin = recipe.beta * ((after["chosen"] - arrays["chosen_ref_N"]) - (after["rejected"] - arrays["rejected_ref_N"]))
    policy = lm.replace(params=top.merge(lm.params, result.params, first))
    figures = policy_figures(lm, policy, rm, review_prompts(reviews.val, recipe.eval_prefixes), recipe)
    save(policy, out.baseline)
    return {**figures, "pairs": int(len(arrays["lengths_N"])), "train_margin": float(np.mean(margin)),
            "train_pair_accuracy": float(np.mean(margin > 0)),
            "final_loss": float(result.losses[-1]) if result.losses.size else None, "beta": recipe.beta,
            "trained_top": recipe.dpo_top, "prefixes": recipe.dpo_prefixes, "new_tokens": recipe.dpo_new_tokens,
            "config": dataclasses.asdict(recipe.dpo)}


RUNNERS: dict[str, Callable] = {"reward": stage_reward, "judge": stage_judge, "dpo": stage_dpo}


def train(cache: str, stages: Sequence[str] = STAGES, recipe: TrainRecipe = TrainRecipe(), progress: bool = True,
          log: Callable[[str], None] = print) -> dict:
    """Run ``stages`` (in `STAGES` order) into `CheckpointPaths` ``(cache)``; returns ``train.json``'s
    content. A stage whose output folder exists is skipped (its record kept)."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; expected some of {list(STAGES)}")
    paths, out = check_cache(cache), CheckpointPaths(cache)
    record = {}
    if os.path.exists(out.record):
        with open(out.record) as f:
            record = json.load(f)
    outputs = {"reward": out.reward, "judge": out.judge, "dpo": out.baseline}
    for stage in (s for s in STAGES if s in stages):
        if os.path.exists(outputs[stage]):
            log(f"{stage}: {outputs[stage]} exists, skipped")
            continue
        start = time.perf_counter()
        figures = RUNNERS[stage](paths, out, recipe, progress, log)
        figures["wall_s"] = round(time.perf_counter() - start, 1)
        record[stage] = figures
        log(f"{stage}: done in {figures['wall_s']:.0f} s -> {outputs[stage]}")
        os.makedirs(out.root, exist_ok=True)
        with open(out.record, "w") as f:
            json.dump(record, f, indent=2)
    return record
