"""``tqjax train world --out DIR [--only reward-bpe]``: build the models of the embedded task with optax."""

from __future__ import annotations

import hashlib
import os
import tempfile


def add_parser(sub) -> None:
    from tqjax.cli.options import checked, int_at_least, positive_number

    p = sub.add_parser("train", help="train models with optax (SFT, reward models, DPO)")
    tasks = p.add_subparsers(dest="task", required=True)
    w = tasks.add_parser("world", help="build sft, baseline-direct, baseline-indirect, reward, "
                                       "reward-baseline and reward-bpe for the embedded review task")
    w.add_argument("--out", required=True, help="folder that receives the six models and train_report.json")
    w.add_argument("--only", default=None, choices=("reward-bpe",),
                   help="build only this model (the one that needs no other) and merge its entry into "
                        "--out's train_report.json; the other models in --out are left as they are")
    w.add_argument("--seed", default=0, **checked(int_at_least(0)))
    w.add_argument("--steps-scale", default=1.0, **checked(positive_number),
                   help="multiply every run's number of steps (e.g. 0.1 for a quick try)")
    w.add_argument("--onpolicy-rounds", "--onpolicy_rounds", dest="onpolicy_rounds", default=1,
                   **checked(int_at_least(0)),
                   help="rounds of on-policy pairs for the target reward model (responses of sft, the DPO "
                        "baseline, best-of-N, ARGS, CD and TQ* ordered by the gold reward); 0 skips them")
    w.add_argument("--work-dir", default=None,
                   help="training state (orbax checkpoints, optimiser state); rerunning with the same "
                        "folder resumes. Default: a folder under the system temp dir derived from "
                        "--out, --seed and --steps-scale, deleted after success")
    w.add_argument("--keep-state", action="store_true", help="keep the training state after success")
    w.add_argument("--overwrite", action="store_true", help="replace models already in --out")
    w.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    w.set_defaults(run=run)


def _default_work_dir(out: str, seed: int, steps_scale: float) -> str:
    tag = hashlib.sha1(f"{os.path.abspath(out)}|{seed}|{steps_scale}".encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), "tqjax-train", tag)


def run(args) -> int:
    from tqjax.train import world as recipe_lib

    only = None if args.only is None else (args.only,)
    existing = recipe_lib.existing_models(args.out, only or recipe_lib.MODELS)
    if existing and not args.overwrite:
        raise FileExistsError(f"{args.out} already holds {', '.join(existing)}; pass --overwrite to replace them")
    work_dir = args.work_dir or _default_work_dir(args.out, args.seed, args.steps_scale)
    os.makedirs(args.out, exist_ok=True)
    print(f"training state in {work_dir} (rerun the same command to resume)")
    recipe = recipe_lib.WorldRecipe(seed=args.seed, steps_scale=args.steps_scale, onpolicy_rounds=args.onpolicy_rounds)
    report = recipe_lib.build(recipe, args.out, work_dir=work_dir, progress=not args.no_progress,
                              overwrite=args.overwrite, only=only)
    if not args.keep_state:
        recipe_lib.remove_state(work_dir)
    seconds = sum(report["seconds"][m] for m in only) if only else report["seconds"]["total"]
    print(f"saved {', '.join(only or recipe_lib.MODELS)} under {args.out} in {seconds:.0f} s; "
          f"report: {os.path.join(args.out, 'train_report.json')}")
    return 0
