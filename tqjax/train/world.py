"""The recipe that builds every model of the embedded review task (`tqjax.world`).

`build` trains, in order: the SFT model (next-token loss on sampled reviews), two reward models
(Bradley–Terry on pairs labelled by the target reward r and by the baseline reward r_BL, each
started from the SFT body), two DPO baselines from the SFT model (pairs labelled by r: the
direct baseline; by r_BL: the indirect baseline), and then continues the target reward model on
on-policy pairs: responses of the decoders it steers, ordered by r (`train_reward_onpolicy`);
last, ``reward-bpe``: the target reward model again, from scratch, reading text with its own
byte-level BPE tokenizer (`train_reward_bpe`). It validates each on held-out data, samples
responses to held-out prompts from the SFT and DPO models to measure their gold rewards, and saves
the six models with `tqjax.save`. Everything is a function of ``WorldRecipe.seed``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tqjax import world
from tqjax.api.models import save
from tqjax.models import Model, init_model
from tqjax.api.decode import TQParams
from tqjax.decoding.config import DecodeConfig
from tqjax.train import data, dpo, onpolicy, reward_model, sft
from tqjax.train.pairs import contrast_pairs, hack_pairs  # noqa: F401  (part of the recipe's API)
from tqjax.train.recipe import WorldRecipe  # noqa: F401  (part of the recipe's API)

MODELS = ("sft", "baseline-direct", "baseline-indirect", "reward", "reward-baseline", "reward-bpe")
ALONE = ("reward-bpe",)    # the models that need no other: `build(only=...)` can build them by themselves
REWARDS = {"target": world.target_reward, "baseline": world.baseline_reward}


def sample_responses(model: Model, tokenizer, prompts: Sequence[str], key: jax.Array,
                     length: int = 64, temperature: float = 1.0) -> list[str]:
    """Sample one response per prompt with full forwards (slow but simple); texts end at ``<eos>``.

    Rows are right-padded in a ``[B, length]`` buffer; step ``t`` reads each row's logits at its
    own last token. ``temperature=0`` is greedy.
    """
    ids = tokenizer(list(prompts))["input_ids"]
    B = len(ids)
    tokens_BT = np.full((B, length), tokenizer.pad_token_id, np.int32)
    for b, row in enumerate(ids):
        tokens_BT[b, :len(row)] = row
    lengths_B = np.asarray([len(r) for r in ids], np.int32)
    done_B = np.zeros(B, bool)
    eos = tokenizer.eos_token_id

    @jax.jit
    def next_token(params, tokens_BT, lengths_B, key):
        logits_BTV = Model(params=params, config=model.config).forward(tokens_BT)
        logits_BV = jnp.take_along_axis(logits_BTV, (lengths_B - 1)[:, None, None], axis=1)[:, 0]
        if temperature == 0:
            return jnp.argmax(logits_BV, axis=-1)
        return jax.random.categorical(key, logits_BV / temperature, axis=-1)

    for step in range(length - int(lengths_B.min())):
        live_B = ~done_B & (lengths_B < length)
        if not live_B.any():
            break
        tok_B = np.asarray(next_token(model.params, tokens_BT, lengths_B, jax.random.fold_in(key, step)))
        rows = np.nonzero(live_B)[0]
        tokens_BT[rows, lengths_B[rows]] = tok_B[rows]
        lengths_B[rows] += 1
        done_B[rows] |= tok_B[rows] == eos
    return [tokenizer.decode(tokens_BT[b, len(ids[b]):lengths_B[b]].tolist(), skip_special_tokens=False)
            for b in range(B)]


def gold_rewards(prompts: Sequence[str], responses: Sequence[str]) -> dict:
    """Mean target and baseline gold rewards, mean length in words and the share that ended."""
    return {"target_reward": float(np.mean([world.target_reward(p, r) for p, r in zip(prompts, responses)])),
            "baseline_reward": float(np.mean([world.baseline_reward(p, r) for p, r in zip(prompts, responses)])),
            "words": float(np.mean([len(r.split()) for r in responses])),
            "ended": float(np.mean([r.endswith(world.generator.EOS) for r in responses]))}


def _pairs(recipe: WorldRecipe, tokenizer, label: str, split: str, n: int, hacks: bool,
           contrasts: bool = False, reader=None) -> dict:
    fn = REWARDS[label]
    pairs = world.make_pairs(n, fn, recipe.seed_for(f"pairs:{label}:{split}"))
    if hacks:
        pairs = pairs + hack_pairs(round(n * recipe.hack_fraction), fn, recipe.seed_for(f"hacks:{label}:{split}"))
    if contrasts:
        pairs = pairs + contrast_pairs(round(n * recipe.contrast_fraction), fn,
                                       recipe.seed_for(f"contrasts:{label}:{split}"))
    return _encode(recipe, tokenizer, reader)(pairs)


def _encode(recipe: WorldRecipe, tokenizer, reader=None) -> Callable[[Sequence[world.Pair]], dict]:
    """Pairs to arrays: SFT ids, or, with a ``reader`` tokenizer, that reader's ids of the text."""
    if reader is None:
        return lambda pairs: data.pair_arrays(tokenizer, pairs, recipe.length)
    return lambda pairs: data.reader_pair_arrays(tokenizer, reader, pairs, recipe.reader_length)


def train_reward(recipe: WorldRecipe, tokenizer, sft_model: Model, name: str, label: str,
                 state_dir: str | None = None, progress: bool = True) -> tuple[Model, dict]:
    """Train reward model ``name`` on pairs labelled by gold reward ``label``; return it and its report.

    Training pairs: ``recipe.pairs`` generator pairs, plus reward-hack pairs (`hack_pairs`) in
    proportion ``hack_fraction``, plus, for the labels in ``contrast_labels``, minimal pairs
    (`contrast_pairs`) in proportion ``contrast_fraction``. The target reward model ("target") runs
    ``recipe.reward``; the baseline one ``recipe.reward_baseline``. Minimal pairs matter for r,
    which reads negation; r_BL ignores negation, so a toggled "not" is a near-tie under r_BL (it
    only pays one word of length), and with them the baseline model measured worse on held-out
    pairs. The model starts from the SFT body. It is validated on held-out generator, reward-hack
    and minimal pairs (separate seeds from training).
    """
    train_pairs = _pairs(recipe, tokenizer, label, "train", recipe.pairs, hacks=True,
                         contrasts=label in recipe.contrast_labels)
    init = reward_model.from_lm(sft_model, jax.random.PRNGKey(recipe.seed_for(f"init:{name}")))
    config = recipe.run_config("reward" if label == "target" else "reward_baseline")
    run = reward_model.train(init, train_pairs, config, state_dir, desc=name, progress=progress)
    rm = init.replace(params=run.params)
    return rm, {"label": label, **_validate_reward(recipe, tokenizer, rm, label), "train_loss_last": _tail(run.losses)}


def _validate_reward(recipe: WorldRecipe, tokenizer, rm: Model, label: str, reader=None) -> dict:
    """Held-out pairwise accuracy on generator, reward-hack and minimal pairs (seeds apart from
    training); with ``reader``, the pairs as that tokenizer reads their text."""
    fn = REWARDS[label]
    n_val = round(recipe.val_pairs * recipe.hack_fraction)
    encode = _encode(recipe, tokenizer, reader)
    gen = reward_model.validate(rm, _pairs(recipe, tokenizer, label, "val", recipe.val_pairs, hacks=False,
                                           reader=reader))
    hack = reward_model.validate(rm, encode(hack_pairs(n_val, fn, recipe.seed_for(f"hacks:{label}:val"))))
    contrast = reward_model.validate(rm, encode(contrast_pairs(n_val, fn, recipe.seed_for(f"contrasts:{label}:val"))))
    return {**gen, "hack_accuracy": hack["accuracy"], "hack_pairs": hack["pairs"],
            "contrast_accuracy": contrast["accuracy"], "contrast_pairs": contrast["pairs"]}


def train_reward_bpe(recipe: WorldRecipe, state_dir: str | None = None,
                     progress: bool = True) -> tuple[Model, dict]:
    """The target reward model with its own tokenizer (``reward-bpe``): `WorldRecipe.bpe_tokenizer`.

    Trained on the first-stage pairs of ``reward`` (the same generator, reward-hack and minimal
    pairs, labelled by r) as a text reader reads them: the SFT ids decoded to text, encoded by
    its own tokenizer (`data.reader_pair_arrays`). It starts from scratch (another vocabulary:
    the SFT body does not fit), with the architecture of the other models and a context of
    ``4 * length`` positions, and runs ``recipe.reward_bpe``. Validated like ``reward``. Needs no
    other model, so `build` can build it alone.
    """
    tokenizer, reader = world.world_tokenizer(), recipe.bpe_tokenizer()
    train_pairs = _pairs(recipe, tokenizer, "target", "train", recipe.pairs, hacks=True,
                         contrasts="target" in recipe.contrast_labels, reader=reader)
    config = recipe.model_config(reader).replace(max_positions=4 * recipe.length)
    lm = init_model(config, jax.random.PRNGKey(recipe.seed_for("init:reward-bpe")), tokenizer=reader)
    init = reward_model.from_lm(lm, jax.random.PRNGKey(recipe.seed_for("init:reward-bpe:head")))
    run = reward_model.train(init, train_pairs, recipe.run_config("reward_bpe"), state_dir, desc="reward-bpe",
                             progress=progress)
    rm = init.replace(params=run.params)
    return rm, {"label": "target", **_validate_reward(recipe, tokenizer, rm, "target", reader=reader),
                "train_loss_last": _tail(run.losses),
                "tokenizer": {"kind": "byte-level BPE", "vocab_size": len(reader), "merges": recipe.bpe_merges,
                              "texts": recipe.bpe_texts}}


def train_reward_onpolicy(recipe: WorldRecipe, tokenizer, sft_model: Model, baseline: Model, rm: Model,
                          state_dir: str | None = None, progress: bool = True,
                          log: Callable[[str], None] = print,
                          sources: Sequence[onpolicy.Source] = onpolicy.SOURCES) -> tuple[Model, dict]:
    """Fine-tune the target reward model on on-policy pairs labelled by the gold reward r.

    Each of ``onpolicy_rounds`` rounds decodes ``onpolicy_prompts`` training prompts with every
    method of ``sources`` (default `onpolicy.SOURCES`: SFT, the direct DPO baseline, best-of-8,
    ARGS, CD and TQ* at α = 1, 2, 4), using ``baseline`` as ρ_BL and the *current* reward model, orders every two
    responses to a prompt by r (`onpolicy.pairs`), and continues training the reward model
    (``reward_onpolicy``) on the generator, reward-hack and minimal pairs of `train_reward` plus
    every round's on-policy pairs so far, repeated ``onpolicy_weight`` times (``steps_scale`` < 1
    scales the prompt counts too). The prompts exclude
    `tqjax eval`'s held-out prompts. The report holds the agreement with r (`onpolicy.agreement`)
    before and after, on each method's outputs to ``onpolicy_check_prompts`` other prompts,
    decoded once with the reward model that this stage starts from.
    """
    base = DecodeConfig(max_new_tokens=recipe.onpolicy_max_new_tokens)
    scaled = lambda n: max(2, round(n * min(recipe.steps_scale, 1.0)))
    check = onpolicy.training_prompts(scaled(recipe.onpolicy_check_prompts), recipe.seed_for("prompts:onpolicy:check"))
    check_samples = onpolicy.sample(TQParams(sft=sft_model, baseline=baseline, reward=rm), check, sources,
                                    base=base.replace(seed=recipe.seed_for("sample:onpolicy:check") % 2**31))
    check_gold = onpolicy.gold_scores(tokenizer, check, check_samples)
    report: dict = {"check_prompts": len(check), "sources": [s.name for s in sources],
                    "gold_reward": {n: float(g.mean()) for n, g in check_gold.items()},
                    "before": onpolicy.agreement(rm, tokenizer, check, check_samples, check_gold), "rounds": []}
    offline = _pairs(recipe, tokenizer, "target", "train", recipe.pairs, hacks=True,
                     contrasts="target" in recipe.contrast_labels)
    held_out = set(check)
    collected = []
    for r in range(recipe.onpolicy_rounds):
        prompts = [p for p in onpolicy.training_prompts(2 * scaled(recipe.onpolicy_prompts),
                                                        recipe.seed_for(f"prompts:onpolicy:{r}"))
                   if p not in held_out][:scaled(recipe.onpolicy_prompts)]
        samples = onpolicy.sample(TQParams(sft=sft_model, baseline=baseline, reward=rm), prompts, sources,
                                  base=base.replace(seed=recipe.seed_for(f"sample:onpolicy:{r}") % 2**31))
        gold = onpolicy.gold_scores(tokenizer, prompts, samples)
        collected.append(onpolicy.pairs(tokenizer, prompts, samples, gold, 2 * recipe.length))
        train = onpolicy.concat([offline] + collected * recipe.onpolicy_weight, tokenizer.pad_token_id)
        config = recipe.run_config("reward_onpolicy").replace(seed=recipe.seed_for(f"order:reward_onpolicy:{r}"))
        run = reward_model.train(rm, train, config, _state_dir(state_dir, f"round{r}"), desc=f"reward round {r + 1}",
                                 progress=progress)
        rm = rm.replace(params=run.params)
        report["rounds"].append({"prompts": len(prompts), "onpolicy_pairs": data.size(collected[-1]),
                                 "gold_reward": {n: float(g.mean()) for n, g in gold.items()},
                                 "train_loss_last": _tail(run.losses)})
        log(f"reward on-policy round {r + 1}: {data.size(collected[-1])} pairs from {len(prompts)} prompts")
    report["after"] = onpolicy.agreement(rm, tokenizer, check, check_samples, check_gold)
    report["validation"] = _validate_reward(recipe, tokenizer, rm, "target")
    return rm, report


def _state_dir(work_dir: str | None, name: str) -> str | None:
    return None if work_dir is None else os.path.join(work_dir, name)


def build(recipe: WorldRecipe, out_dir: str, work_dir: str | None = None, progress: bool = True,
          log: Callable[[str], None] = print, overwrite: bool = False,
          only: Sequence[str] | None = None) -> dict:
    """Train and save every world model under ``out_dir``; return (and write) the report.

    Training state (orbax checkpoints with optimiser state) goes under ``work_dir``, so a rerun
    with the same ``work_dir`` resumes each run where it stopped. ``out_dir`` receives only the
    models (`MODELS`) and ``train_report.json``. ``only`` (names from `ALONE`) builds just those
    models and merges their entries into the ``train_report.json`` already in ``out_dir`` (which
    must be of the same seed and steps scale), leaving every other entry as it was.
    """
    if only is not None:
        return _build_alone(recipe, out_dir, tuple(only), work_dir, progress, log, overwrite)
    start = time.time()
    timings: dict[str, float] = {}
    report: dict = {"seed": recipe.seed, "steps_scale": recipe.steps_scale, "beta": recipe.beta}
    tokenizer = world.world_tokenizer()
    config = recipe.model_config(tokenizer)
    report["model"] = {"arch": config.arch, "d_model": config.d_model, "n_layers": config.n_layers,
                       "n_heads": config.n_heads, "mlp_dim": config.mlp_dim, "vocab_size": config.vocab_size}

    # SFT
    t0 = time.time()
    texts = data.text_arrays(tokenizer, world.sample_texts(recipe.sft_texts, recipe.seed_for("sft:train")), recipe.length)
    val_texts = data.text_arrays(tokenizer, world.sample_texts(recipe.val_texts, recipe.seed_for("sft:val")), recipe.length)
    init = init_model(config, jax.random.PRNGKey(recipe.seed_for("init:sft")), tokenizer=tokenizer)
    run = sft.train(init, texts, recipe.run_config("sft"), _state_dir(work_dir, "sft"), desc="sft", progress=progress)
    sft_model = init.replace(params=run.params)
    report["sft"] = {**sft.validate(sft_model, val_texts), "train_loss_last": _tail(run.losses)}
    log(f"sft: held-out perplexity {report['sft']['perplexity']:.2f} (uniform {config.vocab_size})")
    models = {"sft": sft_model}
    timings["sft"] = time.time() - t0

    # reward models
    for name, label in (("reward", "target"), ("reward-baseline", "baseline")):
        t0 = time.time()
        models[name], report[name] = train_reward(recipe, tokenizer, sft_model, name, label,
                                                  _state_dir(work_dir, name), progress=progress)
        r = report[name]
        log(f"{name}: held-out pairwise accuracy vs gold {label} reward {r['accuracy']:.3f} "
            f"(reward-hack pairs {r['hack_accuracy']:.3f}, minimal pairs {r['contrast_accuracy']:.3f})")
        timings[name] = time.time() - t0

    # DPO baselines
    for name, label in (("baseline-direct", "target"), ("baseline-indirect", "baseline")):
        t0 = time.time()
        train_pairs = dpo.with_reference(sft_model, _pairs(recipe, tokenizer, label, "dpo", recipe.pairs, hacks=False))
        val_pairs = dpo.with_reference(sft_model, _pairs(recipe, tokenizer, label, "val", recipe.val_pairs, hacks=False))
        run = dpo.train(sft_model, train_pairs, recipe.beta, recipe.run_config("dpo"), _state_dir(work_dir, name),
                        desc=name, progress=progress)
        policy = sft_model.replace(params=run.params)
        report[name] = {"label": label, **dpo.validate(policy, val_pairs, recipe.beta),
                        "train_loss_last": _tail(run.losses)}
        log(f"{name}: held-out DPO reward margin {report[name]['margin']:.3f}, "
            f"accuracy vs gold {label} reward {report[name]['accuracy']:.3f}")
        models[name] = policy
        timings[name] = time.time() - t0

    # the target reward model again, on on-policy pairs from the decoders it steers
    if recipe.onpolicy_rounds > 0:
        t0 = time.time()
        models["reward"], report["reward-onpolicy"] = train_reward_onpolicy(
            recipe, tokenizer, sft_model, models["baseline-direct"], models["reward"],
            _state_dir(work_dir, "reward-onpolicy"), progress=progress, log=log)
        before, after = report["reward-onpolicy"]["before"], report["reward-onpolicy"]["after"]
        log(f"reward after on-policy pairs: same-prompt pairwise accuracy vs gold r "
            f"{before['same prompt']['pairwise_accuracy']:.3f} -> {after['same prompt']['pairwise_accuracy']:.3f}, "
            f"Spearman on all outputs {before['all']['spearman']:.3f} -> {after['all']['spearman']:.3f}")
        timings["reward-onpolicy"] = time.time() - t0

    # gold rewards of sampled responses on held-out prompts
    t0 = time.time()
    prompts = world.sample_prompts(recipe.eval_prompts, recipe.seed_for("prompts:eval"))
    key = jax.random.PRNGKey(recipe.seed_for("sample:eval"))
    report["samples"] = {"prompts": len(prompts), "temperature": 1.0}
    for name in ("sft", "baseline-direct", "baseline-indirect"):
        responses = sample_responses(models[name], tokenizer, prompts, key, recipe.length)
        report["samples"][name] = gold_rewards(prompts, responses)
        s = report["samples"][name]
        log(f"{name}: sampled responses: gold r {s['target_reward']:.3f}, gold r_BL {s['baseline_reward']:.3f}, "
            f"{s['words']:.1f} words")
    timings["samples"] = time.time() - t0

    # the target reward model with its own tokenizer
    t0 = time.time()
    models["reward-bpe"], report["reward-bpe"] = _reward_bpe(recipe, work_dir, progress, log)
    timings["reward-bpe"] = time.time() - t0

    for name in MODELS:
        save(models[name], os.path.join(out_dir, name), overwrite=overwrite)
    report["seconds"] = {**{k: round(v, 1) for k, v in timings.items()}, "total": round(time.time() - start, 1)}
    report["params"] = {name: int(sum(x.size for x in jax.tree.leaves(models[name].params))) for name in MODELS}
    with open(os.path.join(out_dir, "train_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


def _reward_bpe(recipe: WorldRecipe, work_dir, progress, log) -> tuple[Model, dict]:
    rm, r = train_reward_bpe(recipe, _state_dir(work_dir, "reward-bpe"), progress=progress)
    log(f"reward-bpe ({r['tokenizer']['vocab_size']} BPE tokens): held-out pairwise accuracy vs gold target reward "
        f"{r['accuracy']:.3f} (reward-hack pairs {r['hack_accuracy']:.3f}, minimal pairs {r['contrast_accuracy']:.3f})")
    return rm, r


def _build_alone(recipe: WorldRecipe, out_dir: str, only: tuple[str, ...], work_dir, progress, log,
                 overwrite: bool) -> dict:
    """`build` with ``only``: train and save those models, merge their report entries."""
    bad = [name for name in only if name not in ALONE]
    if bad or not only:
        raise ValueError(f"only {', '.join(ALONE)} can be built alone (the other models need the SFT "
                         f"model), got {', '.join(only) or 'nothing'}")
    path = os.path.join(out_dir, "train_report.json")
    report: dict = {"seed": recipe.seed, "steps_scale": recipe.steps_scale, "beta": recipe.beta}
    if os.path.exists(path):
        with open(path) as f:
            report = json.load(f)
        if (report.get("seed"), report.get("steps_scale")) != (recipe.seed, recipe.steps_scale):
            raise ValueError(f"{path} is of seed {report.get('seed')}, steps scale {report.get('steps_scale')}; "
                             f"building {', '.join(only)} with seed {recipe.seed}, steps scale "
                             f"{recipe.steps_scale} would mix two recipes in one folder")
    for name in only:
        t0 = time.time()
        model, report[name] = _reward_bpe(recipe, work_dir, progress, log)
        save(model, os.path.join(out_dir, name), overwrite=overwrite)
        report.setdefault("seconds", {})[name] = round(time.time() - t0, 1)
        report.setdefault("params", {})[name] = int(sum(x.size for x in jax.tree.leaves(model.params)))
    os.makedirs(out_dir, exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    return report


def existing_models(out_dir: str, names: Sequence[str] = MODELS) -> list[str]:
    """The ``names`` (default: `MODELS`) that already have a folder under ``out_dir``."""
    return [m for m in names if os.path.exists(os.path.join(out_dir, m))]


def remove_state(work_dir: str) -> None:
    """Delete a finished build's training state."""
    shutil.rmtree(work_dir, ignore_errors=True)


def _tail(losses: np.ndarray, n: int = 20) -> float | None:
    return float(np.mean(losses[-n:])) if losses.size else None
