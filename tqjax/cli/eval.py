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
from tqjax.world.generator import EVAL_PROMPT_SEED as EVAL_SEED

METHODS = ("sft", "baseline", "bon", "args", "cd", "tq", "tq-indirect")
MATCHED_RULE = ("N = round(forwards(tq) / forwards(one best-of-N sample)), both counted per committed token as "
                "the engine runs them (DecodePlan.forwards): TQ* with k·M·H rollout-model proposals, "
                "k·M·(H+1) reward-model positions and a commit per model (3 + k·M·(2H+1)); a best-of-N "
                "sample one policy and one reward forward")


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
    p.add_argument("--no-warmup", "--no_warmup", dest="warmup", action="store_false",
                   help="skip the warm-up decode of each method's first batch: the tokens/s column then "
                        "includes compiling (the other figures are the same)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--dtype", default=None, help="cast weights on load (e.g. bfloat16)", **checked(dtype_name))
    add_decode_flags(p)
    p.set_defaults(run=run)


def _methods(args, models, config):
    from tqjax.api.decode import TQParams
    from tqjax.eval import Method
    from tqjax.eval.harness import method_table

    direct = TQParams(sft=models["sft"], baseline=models["baseline-direct"], reward=models["reward"])
    indirect = TQParams(sft=models["sft"], baseline=models["baseline-indirect"], reward=models["reward"],
                        baseline_reward=models.get("reward-baseline"))
    table = method_table(direct, indirect, config)
    chosen = [table[name] for name in args.methods.split(",")]
    if args.gold_rm:
        from tqjax.world.oracle import gold_reward_model

        oracle = TQParams(sft=models["sft"], baseline=models["baseline-direct"],
                          reward=gold_reward_model(models["sft"].tokenizer))
        chosen += [Method(f"{m.name} (gold RM)", oracle, m.config) for m in chosen
                   if m.name in ("bon", "args", "cd", "tq")]
    return chosen


def _numbers(text: str, flag: str, kind):
    from tqjax.cli.options import numbers

    try:
        return numbers(text, kind)
    except ValueError as e:
        raise ValueError(f"{flag} {e}") from None


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


def _rm_agreement(rm, tokenizer, prompts, result: dict) -> dict:
    """The learned reward model against gold r on one method's test outputs (`rank_agreement`)."""
    from tqjax.eval.metrics import rank_agreement, rm_scores

    return rank_agreement(rm_scores(rm, tokenizer, prompts, result["tokens"]), result["gold"])


def run(args) -> int:
    from tqjax.eval import markdown_table
    from tqjax.eval.compare import agreement_markdown, paired_markdown
    from tqjax.eval.encoder import coherence_scorer
    from tqjax.eval.harness import (paired_tests, plot_frontier, run_methods, selection_report, summarise_runs,
                                    validation_report)
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
    coherence, coherence_info = coherence_scorer(args.coherence_model, args.coherence_pooling, models["sft"], test)
    methods = _methods(args, models, config)

    key = "gold_reward" if gold else "reward"
    records = run_methods(methods, test, val, args.batch_size, gold, alphas, bon_ns, key, warmup=args.warmup)
    summary = summarise_runs(records, coherence, key)
    table, frontier, selected = summary["table"], summary["frontier"], summary["selected"]
    agree = lambda r: _rm_agreement(models["reward"], models["sft"].tokenizer, test, r)
    agreement = {name: agree(rec["result"]) for name, rec in records.items()} if gold else {}
    if gold:
        for name, points in frontier.items():
            for point in points:
                point["rm_agreement"] = agree(summary["test_runs"][name][point["value"]])

    paired = []
    if gold:
        learned = ["sft", "baseline", "bon", "args", "cd", "tq-indirect"]
        oracle = ["sft", "baseline"] + [f"{n} (gold RM)" for n in ("bon", "args", "cd")]
        paired = paired_tests({n: rec["result"]["gold"] for n, rec in records.items()}, summary,
                              [("tq", learned), ("tq (gold RM)", oracle)], "gold_reward")

    os.makedirs(args.out, exist_ok=True)
    report = dict(methods=table, prompts=len(test), validation_prompts=len(val), split=split,
                  reward_model=os.path.abspath(paths["reward"]),
                  config=dataclasses.asdict(config), coherence=coherence_info,
                  intervals=dict(kind="percentile bootstrap over prompts", level=LEVEL, resamples=RESAMPLES, seed=0),
                  selected=selection_report(summary, key),
                  paired=paired, frontier=frontier, rm_agreement=agreement,
                  validation=validation_report(summary))
    report["matched_compute"] = {
        "bon_n": next((m.config.n for m in methods if m.name == "bon"), None),
        "rule": MATCHED_RULE}
    with open(result_file, "w") as f:
        json.dump(report, f, indent=2)
    md = markdown_table(table, selected, coherence_info["label"])
    notes = [f"{len(test)} test prompts; each figure is a mean over them with its {LEVEL:.0%} percentile-bootstrap "
             f"interval in brackets ({RESAMPLES} resamples of the prompts). tokens/s has no interval"
             + (" and excludes compiling (a warm-up decode of each method's first batch)." if args.warmup else
                " and includes compiling (--no-warmup)."),
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
    plot = os.path.join(args.out, "frontier.png")
    if plot_frontier(summary, plot, key, "gold reward r (mean over test prompts)" if gold
                     else "RM reward (mean over test prompts)"):
        print(f"frontier plot: {plot}")
    print(f"wrote {result_file}")
    return 0
