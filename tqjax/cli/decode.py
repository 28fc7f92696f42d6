"""``tqjax decode``: the main job. No flags: TQ* on the shipped models, printed next to SFT."""

from __future__ import annotations

import json
import os

import numpy as np

from tqjax.cli.options import (add_decode_flags, add_mesh_flag, add_model_flags, check_roles, checked, decode_config,
                                int_at_least, load_models, local_mesh, model_paths, reward_labels)
from tqjax.cli.plan import add_budget_flag, auto_batch

DEMO_PROMPTS = 6
DEMO_SEED = 20_000        # held out: the training recipe draws its data from other seeds


def add_parser(sub) -> None:
    p = sub.add_parser("decode", help="decode prompts with Transfer Q* (or another method)")
    add_model_flags(p)
    p.add_argument("--prompts", help="JSONL file of {\"id\", \"prompt\"}, {\"id\", \"prompt_ids\"} "
                                     "or {\"id\", \"messages\"} lines")
    p.add_argument("--out", help="output JSONL (id, tokens, text, reward, kl, logp_sft, log_ratio per line)")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", default=0,
                   **checked(int_at_least(0, " (0: auto)")), help="prompts per batch (default 0: the largest that fits --memory-budget)")
    add_budget_flag(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    add_mesh_flag(p)
    add_decode_flags(p)
    p.set_defaults(run=run)


def run(args) -> int:
    if bool(args.prompts) != bool(args.out):
        raise ValueError("--prompts and --out go together (or give neither for the demo)")
    if args.prompts:
        return _job(args)
    return _demo(args)


def _batches(n, size):
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


def _job(args) -> int:
    from tqdm.auto import tqdm

    from tqjax.api.decode import Decoder, TQParams, prompt_ids
    from tqjax.io.prompts import check_new_file, make_folder, read_prompts, result_line

    config = decode_config(args)
    records = read_prompts(args.prompts)
    check_new_file(args.out, args.overwrite)
    mesh = local_mesh(args) if args.mesh else None
    paths = model_paths(args)
    check_roles(config, paths)
    models = load_models(paths, args.dtype, reward_labels(args))
    params = TQParams(**models)
    for i, record in enumerate(records):   # tokenizer and chat-template errors before any decoding
        try:
            prompt_ids(models["sft"].tokenizer, record.value, i)
        except (ValueError, TypeError) as e:
            raise type(e)(f"{args.prompts}: id {record.id!r}: {e}") from None
    batch_size, config = auto_batch(args, params, config, [r.value for r in records])
    make_folder(args.out)
    decoder = Decoder(params, config, mesh)      # the params are placed once, for every batch
    partial = args.out + ".partial"
    with open(partial, "w") as f, tqdm(total=len(records), desc=f"decode {config.method}", unit="prompt") as bar:
        for lo, hi in _batches(len(records), batch_size):
            out = decoder.run([r.value for r in records[lo:hi]], indices=range(lo, hi))
            for i, record in enumerate(records[lo:hi]):
                f.write(json.dumps(result_line(record.id, out, i)) + "\n")
            bar.update(hi - lo)
    os.replace(partial, args.out)
    print(f"wrote {len(records)} responses to {args.out}")
    return 0


def _demo(args) -> int:
    from tqdm.auto import tqdm

    from tqjax.api.decode import Decoder, TQParams
    from tqjax.world import sample_prompts, target_reward

    config = decode_config(args, max_new_tokens=48)
    models = load_models(model_paths(args), args.dtype, reward_labels(args))
    params = TQParams(**models)
    prompts = sample_prompts(DEMO_PROMPTS, seed=DEMO_SEED)
    batch_size, config = auto_batch(args, params, config, prompts)
    sft_config = config.replace(method="sft", temperature=0.0)
    print(f"Transfer Q* on the shipped review-task models: k={config.k}, alpha={config.alpha}, "
          f"H={config.horizon}, M={config.rollouts}, {config.transfer} transfer")
    results = {}
    label = "TQ*" if config.method == "tq" else config.method
    for name, cfg in (("SFT", sft_config), (label, config)):
        outs, decoder = [], Decoder(params, cfg)
        for lo, hi in tqdm(_batches(len(prompts), batch_size), desc=name, leave=False):
            outs.append(decoder.run(prompts[lo:hi], indices=range(lo, hi)))
        texts = [t for o in outs for t in o.texts]
        rewards = np.concatenate([o.rewards for o in outs])
        results[name] = (texts, rewards, [target_reward(p, t) for p, t in zip(prompts, texts)])
    for i, prompt in enumerate(prompts):
        print(f"\nprompt: {prompt}")
        for name, (texts, rewards, gold) in results.items():
            print(f"  {name:4s} [gold r {gold[i]:+.2f} | RM {rewards[i]:+.2f}] {texts[i]}")
    print()
    for name, (_, rewards, gold) in results.items():
        print(f"mean over {len(prompts)} prompts  {name:4s}: gold r {np.mean(gold):+.3f}  RM {np.mean(rewards):+.3f}")
    return 0
