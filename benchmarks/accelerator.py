"""TQ* throughput on an accelerator, bfloat16, MFU vs the device peak: a ~1B-parameter random
Llama, and the real SmolLM2-135M-Instruct (issue 23).

Random models are built in-process: SFT, baseline and reward model of the same shape. The
necessary FLOPs (`throughput.necessary_flops`) over the measured decode time, divided by the
device's dense bf16 peak, is the MFU. The real part (``--real PATH``) loads SmolLM2 from the file
it is given (the ``.gguf`` of ``tqjax sentiment setup`` or its tqjax checkpoint folder) in
bfloat16, with SFT = baseline and a reward model on the same backbone
(`tqjax.train.reward_model.from_lm`), and reports TQ* tokens/s and MFU at 4 chat prompts and
larger batches, the authors'-style PyTorch loop on the same device (torch on CUDA when it is
there), and the memory planner's estimate against XLA's compiled memory. ``--real shapes`` runs
random weights of SmolLM2's exact shapes instead: the same program, the same FLOPs and memory,
for a device the file cannot be copied to. The JSON goes to
``benchmarks/results/accelerator-<device>-<date>.json``.

    python benchmarks/accelerator.py                       # ~1B model, batches 16 and 64
    python benchmarks/accelerator.py --real ~/.cache/tqjax/sentiment/model/SmolLM2-135M-Instruct.Q4_1.gguf
    python benchmarks/accelerator.py --dry-run             # the whole path on the CPU, tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import Setting, TqjaxRunner, first_difference, make_prompts, necessary_flops  # noqa: E402
from tqjax.api.decode import TQParams  # noqa: E402
from tqjax.models import ModelConfig, init_model  # noqa: E402

# dense bf16 peak FLOP/s by device kind (vendor figures, no sparsity)
PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "TPU v5 lite": 197e12,
         "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v4": 275e12, "TPU v6": 918e12}

SIZES = {
    "1b": dict(vocab_size=32000, d_model=2048, n_layers=16, n_heads=16, n_kv_heads=8, mlp_dim=5632, max_positions=512),
    "tiny": dict(vocab_size=512, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, mlp_dim=128, max_positions=256),
}
# SmolLM2-135M-Instruct's shapes (its config.json), for ``--real shapes``; the dry run's stand-in
SMOLLM2 = dict(vocab_size=49152, d_model=576, n_layers=30, n_heads=9, n_kv_heads=3, mlp_dim=1536,
               max_positions=8192, rope_theta=100000.0, tie_embeddings=True, norm_eps=1e-5,
               bos_token_id=1, eos_token_id=2, pad_token_id=2)
SMOLLM2_TINY = dict(SMOLLM2, vocab_size=512, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, mlp_dim=128,
                    max_positions=512)


def device_peak(device) -> tuple[float | None, str]:
    for name, peak in PEAKS.items():
        if name.lower() in device.device_kind.lower():
            return peak, f"vendor dense bf16 peak of {name}"
    return None, "unknown device kind: MFU against the measured bf16 matmul rate only"


def bf16_matmul_rate(n=None, reps=5) -> float:
    n = n or (8192 if jax.default_backend() != "cpu" else 1024)
    a = jnp.ones((n, n), jnp.bfloat16)
    dot = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
    dot(a, a).block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        out = dot(a, a)
    out.block_until_ready()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def build(size: str) -> TQParams:
    cfg = ModelConfig.llama(**SIZES[size], eos_token_id=2, pad_token_id=0)
    make = lambda kind, seed: init_model(cfg.replace(kind=kind), jax.random.key(seed), dtype=jnp.bfloat16)
    return TQParams(sft=make("lm", 0), baseline=make("lm", 1), reward=make("reward", 2))


def load_real(path: str, dtype, workdir: str):
    """(sft, reward) in ``dtype``: the SmolLM2 file at ``path``, random weights of its shapes
    (``"shapes"``), or (``"tiny"``, the dry run) a tiny random stand-in saved and loaded back
    through the same `tqjax.load` path as a real checkpoint."""
    import tqjax
    from tqjax.train.reward_model import from_lm

    if path in ("shapes", "tiny"):
        cfg = ModelConfig.llama(**(SMOLLM2 if path == "shapes" else SMOLLM2_TINY))
        sft = init_model(cfg, jax.random.key(0), dtype=jnp.float32)
        if path == "tiny":
            tqjax.save(sft, os.path.join(workdir, "smollm2-tiny"))
            sft = tqjax.load(os.path.join(workdir, "smollm2-tiny"), dtype=dtype)
        else:
            sft = sft.replace(params=jax.tree.map(lambda x: x.astype(dtype), sft.params))
    else:
        path = os.path.expanduser(path)
        if not os.path.exists(path):
            raise SystemExit(f"--real {path}: no such file. Copy SmolLM2-135M-Instruct.Q4_1.gguf (made by "
                             f"`tqjax sentiment setup` in ~/.cache/tqjax/sentiment/model/) to the machine, "
                             f"or pass --real shapes for random weights of its shapes")
        sft = tqjax.load(path, dtype=dtype)
    return sft, from_lm(sft, jax.random.key(0))


def real_prompts(sft, n: int) -> list[list[int]]:
    import real_models as real
    if sft.tokenizer is not None:
        return (real.prompts(sft.tokenizer, "chat", len(real.CHATS)) * n)[:n]
    rng = np.random.default_rng(0)      # no tokenizer (random stand-ins): chat-length random ids
    return [rng.integers(3, sft.vocab_size, 72 + 3 * (b % 4)).tolist() for b in range(n)]


def authors_loop(sft, reward, ps, s: Setting, device: str, dtype) -> dict:
    """The authors'-style loop (`reference_torch.tq_authors_style`) on ``device`` with the same
    weights, one prompt; tokens/s and its tokens (or why it did not run)."""
    try:
        import torch

        import real_models as real
        from reference_torch import tq_authors_style
    except ImportError as e:
        return dict(skipped=f"torch/transformers not importable ({e})")
    dev = "cuda" if device != "cpu" and torch.cuda.is_available() else "cpu"
    if device != "cpu" and dev == "cpu":
        return dict(skipped="torch has no CUDA here: the loop would not run on the same device")
    as32 = lambda m: m.replace(params=jax.tree.map(lambda x: x.astype(jnp.float32), m.params))  # noqa: E731
    lm, rm = real.to_torch(as32(sft), as32(reward))
    tdtype = torch.bfloat16 if dtype == jnp.bfloat16 else torch.float32
    lm, rm = lm.to(dev, tdtype), rm.to(dev, tdtype)
    with torch.device(dev):
        tq_authors_style(lm, lm, rm, ps[:1], k=s.k, horizon=s.horizon, max_new_tokens=1)   # warm
        t = time.perf_counter()
        out = tq_authors_style(lm, lm, rm, ps[:1], k=s.k, horizon=s.horizon, max_new_tokens=s.new_tokens)
        if dev == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
    return dict(device=dev, dtype=str(tdtype), tokens_per_s=s.new_tokens / seconds, tokens=out)


def run_real(args, peak, measured, workdir) -> list[dict]:
    from tqjax.decoding import memory as planner

    import real_models as real
    sft, reward = load_real(args.real, jnp.bfloat16, workdir)
    params = TQParams(sft=sft, baseline=sft, reward=reward)
    c = sft.config
    print(f"\nreal model ({args.real}): {c.n_layers} layers, d={c.d_model}, vocab {c.vocab_size}, bfloat16; "
          f"TQ* k={args.k}, H={args.horizon}, {args.real_new_tokens} new tokens, ignore_eos")
    rows = []
    for batch in [int(b) for b in args.real_batches.split(",")]:
        ps = real_prompts(sft, batch)
        s = Setting(prompts=batch, k=args.k, horizon=args.horizon, new_tokens=args.real_new_tokens)
        runner = TqjaxRunner(params, ps, s)
        tokens = runner()                                  # warm
        t = time.perf_counter()
        tokens = runner()
        seconds = time.perf_counter() - t
        flops = real.flops_of(params, ps, s)
        estimate = planner.plan(params, _config(s), batch, max(map(len, ps))).total / 2**20
        row = dict(batch=batch, prompt_lens=[len(p) for p in ps], seconds=seconds,
                   tokens_per_s=batch * s.new_tokens / seconds, compile_s=runner.compile_s,
                   necessary_tflop=flops / 1e12, tflops=flops / seconds / 1e12,
                   mfu=None if peak is None else flops / seconds / peak,
                   fraction_of_measured_matmul=flops / seconds / measured,
                   compiled_mib=runner.compiled_mib, planned_mib=estimate)
        if batch == min(int(b) for b in args.real_batches.split(",")):
            ref = authors_loop(sft, reward, ps, s, jax.default_backend(), jnp.bfloat16)
            if "tokens" in ref:
                ref["same_tokens_as_tqjax"] = first_difference(ref.pop("tokens"), tokens[:1]) is None
                ref["tqjax_over_authors"] = row["tokens_per_s"] / ref["tokens_per_s"]
            row["authors"] = ref
        rows.append(row)
        mfu = "n/a" if row["mfu"] is None else f"{100 * row['mfu']:.2f}%"
        print(f"batch {batch:3d}: {row['tokens_per_s']:8.2f} tokens/s  MFU {mfu}  "
              f"({100 * row['fraction_of_measured_matmul']:.2f}% of measured matmul)  compile {row['compile_s']:.1f}s  "
              f"memory compiled {row['compiled_mib']:.0f} MiB / planned {row['planned_mib']:.0f} MiB "
              f"({row['planned_mib'] / row['compiled_mib']:.2f}x)")
        if "authors" in row:
            a = row["authors"]
            print("  authors'-style loop: " + (a["skipped"] if "skipped" in a else
                  f"{a['tokens_per_s']:.3f} tokens/s on {a['device']} ({a['dtype']}, 1 prompt); tqjax / it "
                  f"{a['tqjax_over_authors']:.1f}x; same tokens: {a['same_tokens_as_tqjax']} (bf16 in both "
                  f"stacks: a near-tie may split them)"))
    return rows


def _config(s: Setting):
    from throughput import decode_config
    return decode_config(s)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="1b")
    p.add_argument("--batches", default="16,64")
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--horizon", type=int, default=20)
    p.add_argument("--real", default=None,
                   help="SmolLM2-135M-Instruct: a .gguf file or tqjax checkpoint folder; 'shapes': random weights "
                        "of its shapes")
    p.add_argument("--real-batches", default="4,64")
    p.add_argument("--real-new-tokens", type=int, default=16)
    p.add_argument("--skip-random", action="store_true", help="only the real model")
    p.add_argument("--dry-run", action="store_true",
                   help="every part on the CPU at tiny sizes (random tiny model, a tiny stand-in for the real one)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = p.parse_args(argv)
    if args.dry_run:
        jax.config.update("jax_platforms", "cpu")
        args.size, args.batches, args.prompt_len, args.new_tokens = "tiny", "2", 8, 2
        args.k, args.horizon, args.real, args.real_batches, args.real_new_tokens = 2, 2, "tiny", "2", 2

    device = jax.devices()[0]
    peak, peak_source = device_peak(device)
    measured = bf16_matmul_rate(n=256 if args.dry_run else None)
    print(f"device: {device.device_kind} ({jax.default_backend()}), jax {jax.__version__}")
    print(f"bf16 matmul measured: {measured / 1e12:.3f} TFLOP/s; peak used for MFU: "
          f"{'%.0f TFLOP/s' % (peak / 1e12) if peak else 'n/a'} ({peak_source})")
    rows = []
    if not args.skip_random:
        params = build(args.size)
        n_params = sum(x.size for x in jax.tree.leaves(params.sft.params))
        print(f"random Llama: {n_params / 1e9:.2f}B params x 3 (sft, baseline, reward), bfloat16")
    for batch in ([] if args.skip_random else [int(b) for b in args.batches.split(",")]):
        s = Setting(prompts=batch, prompt_len=args.prompt_len, k=args.k, horizon=args.horizon,
                    new_tokens=args.new_tokens)
        runner = TqjaxRunner(params, make_prompts(batch, args.prompt_len, params.sft.vocab_size), s)
        runner()                                   # warm
        t = time.perf_counter()
        runner()
        seconds = time.perf_counter() - t
        flops = necessary_flops(params, s)
        row = dict(batch=batch, prompt_len=s.prompt_len, k=s.k, horizon=s.horizon, new_tokens=s.new_tokens,
                   seconds=seconds, tokens_per_s=batch * s.new_tokens / seconds, compile_s=runner.compile_s,
                   compiled_mib=runner.compiled_mib, necessary_tflop=flops / 1e12,
                   tflops=flops / seconds / 1e12, mfu=None if peak is None else flops / seconds / peak,
                   fraction_of_measured_matmul=flops / seconds / measured)
        rows.append(row)
        print(f"batch {batch:3d}: {row['tokens_per_s']:8.1f} tokens/s  {row['tflops']:7.1f} TFLOP/s  "
              f"MFU {'%.1f%%' % (100 * row['mfu']) if peak else 'n/a'}  "
              f"({100 * row['fraction_of_measured_matmul']:.1f}% of measured matmul)  compile {row['compile_s']:.1f}s  "
              f"memory {row['compiled_mib']:.0f} MiB")
    import tempfile
    with tempfile.TemporaryDirectory() as workdir:
        real_rows = run_real(args, peak, measured, workdir) if args.real else []
    os.makedirs(args.out, exist_ok=True)
    kind = device.device_kind.replace(" ", "-")
    path = os.path.join(args.out, f"accelerator-{kind}-{datetime.date.today().isoformat()}"
                                  f"{'-dry-run' if args.dry_run else ''}.json")
    with open(path, "w") as f:
        json.dump(dict(device=device.device_kind, backend=jax.default_backend(), jax=jax.__version__,
                       peak_flops=peak, peak_source=peak_source, dry_run=args.dry_run,
                       measured_bf16_matmul_flops=measured, rows=rows, real=args.real, real_rows=real_rows),
                  f, indent=2)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
