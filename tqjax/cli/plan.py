"""``tqjax plan``: estimated memory per device of a decode, and the largest batch that fits.

Reads only the models' configs (no weights), so it can plan a pod-sized job from a laptop:
``tqjax plan --sft DIR --baseline DIR --reward DIR --k 10 --horizon 20 --data 8 --model 1``.
"""

from __future__ import annotations

import json
import os

import numpy as np

from tqjax.cli.options import add_decode_flags, add_model_flags, checked, decode_config, int_at_least, model_paths, reward_labels


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help="estimate memory per device and the largest batch that fits")
    add_model_flags(p)
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", default=0,
                   **checked(int_at_least(0, " (0: the largest that fits)")),
                   help="batch to show the estimate for (default: the largest that fits)")
    p.add_argument("--prompt-len", "--prompt_len", dest="prompt_len", default=128,
                   **checked(int_at_least(1)),
                   help="longest prompt in tokens (default 128)")
    p.add_argument("--data", default=1, **checked(int_at_least(1)), help="devices on the mesh's data axis (prompts)")
    p.add_argument("--model", default=1, **checked(int_at_least(1)), help="devices on the mesh's model axis (tensor parallel)")
    p.add_argument("--continuous", action="store_true",
                   help="plan rows in flight under continuous batching, as tqjax batch and tqjax eval "
                        "run them (no power-of-two bucket; room for the rows being inserted)")
    add_budget_flag(p)
    add_decode_flags(p)
    p.set_defaults(run=run)


def add_budget_flag(p) -> None:
    p.add_argument("--memory-budget", "--memory_budget", dest="memory_budget", default=None,
                   **checked(memory_size),
                   help="memory per device, e.g. 16GB or 512MiB (default: the device's memory)")


def memory_size(text: str) -> str:
    from tqjax.decoding.memory import parse_bytes

    parse_bytes(text)
    return text


def budget(args) -> int:
    from tqjax.decoding.memory import device_memory, parse_bytes

    return device_memory() if args.memory_budget is None else parse_bytes(args.memory_budget)


def auto_batch(args, params, config, prompts, continuous: bool = False):
    """``(batch size, config)`` for ``decode``/``batch``: ``--batch-size`` when given, else the
    largest batch (at most 256, or the number of prompts) that the planner fits in the budget,
    with candidates chunked when not even batch 1 fits with all k at once. ``continuous``: rows in
    flight under continuous batching (`tqjax.decoding.memory.plan`)."""
    if args.batch_size:
        return args.batch_size, config
    from tqjax.api.decode import prompt_ids
    from tqjax.decoding.memory import pick_batch_size
    from tqjax.io.chat import is_messages

    tokenizer = getattr(params.sft, "tokenizer", None)

    def length(i, prompt):
        if is_messages(prompt) or isinstance(prompt, str) and tokenizer is not None:
            return len(prompt_ids(tokenizer, prompt, i))
        return len(prompt)

    longest = max((length(i, p) for i, p in enumerate(prompts)), default=1)
    return pick_batch_size(params, config, max(longest, 1), budget(args),
                           max_batch=max(1, min(256, len(prompts))), continuous=continuous)


def read_model_config(path: str, reward_label=None):
    """``(ModelConfig, bytes per weight)`` of a tqjax checkpoint or Hugging Face folder, no weights
    (a classifier's ``reward_label`` is checked against its labels)."""
    from tqjax.io import config_from_hf, is_tqjax_checkpoint
    from tqjax.io.checkpoint import read_config
    from tqjax.io.hf import check_folder, read_hf_config
    from tqjax.io.hf_config import label_index

    check_folder(path)
    if is_tqjax_checkpoint(path):
        with open(os.path.join(path, "tqjax.json")) as f:
            dtype = json.load(f).get("dtype", "float32")
        return read_config(path), np.dtype(dtype).itemsize
    raw = read_hf_config(path)
    label_index(raw, reward_label)
    dtype = 2 if (raw.get("torch_dtype") or raw.get("dtype")) in ("bfloat16", "float16") else 4
    return config_from_hf(raw), dtype


def run(args) -> int:
    from tqjax.decoding.memory import format_bytes, largest_batch, plan, suggest_chunk

    config = decode_config(args)
    labels = reward_labels(args)
    read = {role: read_model_config(path, labels.get(role)) for role, path in model_paths(args).items()}
    configs = {role: cfg for role, (cfg, _) in read.items()}
    dtype = args.dtype or {2: "bfloat16", 4: "float32"}[max(nbytes for _, nbytes in read.values())]
    # one device is planned as `tqjax.decode` without a mesh runs it
    mesh = None if (args.data, args.model) == (1, 1) else (args.data, args.model)
    memory = budget(args)
    cont = args.continuous
    best = largest_batch(configs, config, args.prompt_len, memory, mesh, dtype=dtype, continuous=cont)
    chunk = config.candidate_chunk
    if best == 0:
        chunk = suggest_chunk(configs, config, 1, args.prompt_len, memory, mesh, dtype=dtype,
                              continuous=cont)
        config = config.replace(candidate_chunk=chunk)
    shown = plan(configs, config, args.batch_size or max(best, 1), args.prompt_len, mesh,
                 dtype=dtype, budget=memory, continuous=cont)
    print(f"tqjax plan: method {config.method}, k={config.k}, horizon={config.horizon}, "
          f"rollouts={config.rollouts}, max_new_tokens={config.max_new_tokens}, weights {dtype}"
          + (", continuous batching (rows in flight)" if cont else ""))
    print(shown.table())
    if not shown.fits:
        print(f"batch {shown.batch} does NOT fit the budget of {format_bytes(memory)} per device")
    if best:
        what = "most rows in flight" if cont else "largest batch"
        print(f"{what} that fits {format_bytes(memory)} per device: {best}")
    else:
        print(f"no batch fits with all {config.k} candidates at once; batch 1 fits with "
              f"--candidate-chunk {chunk}")
    return 0 if shown.fits or not args.batch_size else 1
