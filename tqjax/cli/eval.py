"""``tqjax eval``: every method side by side on held-out prompts, a table and a frontier plot."""

from __future__ import annotations

import dataclasses
import json
import os

from tqjax.cli.options import SHIPPED, add_decode_flags, decode_config, load_models

EVAL_SEED = 30_000   # held-out prompts of the world task


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="compare sft, baseline, bon, args, cd, tq and indirect tq")
    p.add_argument("--checkpoints", default=str(SHIPPED),
                   help="folder with sft, baseline-direct, baseline-indirect, reward, reward-baseline")
    p.add_argument("--prompts", help="JSONL prompts, as for `tqjax decode --prompts` (default: "
                                     "held-out prompts of the world task)")
    p.add_argument("--n-prompts", "--n_prompts", dest="n_prompts", type=int, default=32)
    p.add_argument("--out", default="out/eval", help="output folder (eval.json, eval.md, frontier.png)")
    p.add_argument("--alphas", default="", help="comma-separated α sweep for tq, cd, args (e.g. 0.5,1,2,4)")
    p.add_argument("--methods", default="sft,baseline,bon,args,cd,tq,tq-indirect")
    p.add_argument("--gold-rm", "--gold_rm", dest="gold_rm", action="store_true",
                   help="also run bon, args, cd and tq with the exact gold reward as the reward model")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=16)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--dtype", default=None, help="cast weights on load (e.g. bfloat16)")
    add_decode_flags(p)
    p.set_defaults(run=run)


METHODS = ("sft", "baseline", "bon", "args", "cd", "tq", "tq-indirect")


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


def run(args) -> int:
    import numpy as np

    from tqjax.api.decode import prompt_ids as encode
    from tqjax.eval import markdown_table, run as run_method, summarise
    from tqjax.io.prompts import read_prompts
    from tqjax.world import sample_prompts, target_reward

    names = args.methods.split(",")
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; expected a subset of {list(METHODS)}")
    alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
    if any(not np.isfinite(a) for a in alphas):
        raise ValueError(f"--alphas must be finite numbers, got {args.alphas!r}")
    if args.n_prompts < 1 or args.batch_size < 1:
        raise ValueError("--n-prompts and --batch-size must be >= 1")
    config = decode_config(args, max_new_tokens=48)
    result_file = os.path.join(args.out, "eval.json")
    if os.path.exists(result_file) and not args.overwrite:
        raise FileExistsError(f"{result_file} already exists; pass --overwrite to replace it")
    if args.prompts:
        prompts = [r.value for r in read_prompts(args.prompts)]
        gold = None
    else:
        prompts = sample_prompts(args.n_prompts, seed=EVAL_SEED)
        gold = target_reward
    roles = ("sft", "baseline-direct", "baseline-indirect", "reward", "reward-baseline")
    models = load_models({r: os.path.join(args.checkpoints, r) for r in roles}, args.dtype)
    methods = _methods(args, models, config)
    tokenizer = models["sft"].tokenizer
    prompt_ids = [encode(tokenizer, p, i).tolist() for i, p in enumerate(prompts)]

    results = {}
    for m in methods:
        results[m.name] = run_method(m, prompts, args.batch_size, gold)
        print(f"{m.name}: done in {results[m.name]['seconds']:.1f}s")
    table = summarise(results, models["sft"], prompt_ids)
    frontier = {}
    for alpha in alphas:
        for m in methods:
            if m.config.method in ("tq", "cd", "args") and not m.name.startswith("tq-indirect"):
                swept = type(m)(m.name, m.params, m.config.replace(alpha=alpha))
                r = run_method(swept, prompts, args.batch_size, gold, warmup=False)
                frontier.setdefault(m.name, []).append(
                    (alpha, float(np.mean(r["kl"])), float(np.mean(r["gold"]) if gold else np.mean(r["rewards"]))))
    os.makedirs(args.out, exist_ok=True)
    report = dict(methods=table, prompts=len(prompts), config=dataclasses.asdict(config), frontier=frontier)
    report["matched_compute"] = {
        "bon_n": next((m.config.n for m in methods if m.name == "bon"), None),
        "rule": "N = round(forwards_per_token(tq) / 2): TQ* spends 2·k·M·(H+1)+3 model token-forwards per "
                "generated token, best-of-N spends N policy + N reward forwards"}
    with open(result_file, "w") as f:
        json.dump(report, f, indent=2)
    md = markdown_table(table)
    with open(os.path.join(args.out, "eval.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    if frontier:
        from tqjax.eval.plot import frontier_plot
        anchors = {n: (table[n]["kl"], table[n].get("gold_reward", table[n]["reward"]))
                   for n in ("sft", "baseline", "bon", "bon (gold RM)") if n in table}
        frontier_plot(frontier, os.path.join(args.out, "frontier.png"), anchors)
        print(f"frontier plot: {os.path.join(args.out, 'frontier.png')}")
    print(f"wrote {result_file}")
    return 0
