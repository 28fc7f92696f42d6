"""TQ* throughput on an accelerator: a ~1B-parameter random Llama in bfloat16, MFU vs the device peak.

Models are built in-process (random weights, no downloads): SFT, baseline and reward model of
the same shape. The necessary FLOPs (`throughput.necessary_flops`) over the measured
decode time, divided by the device's dense bf16 peak, is the MFU. The JSON goes to
``benchmarks/results/accelerator-<device>-<date>.json``.

    python benchmarks/accelerator.py                 # ~1B model, batches 16 and 64
    python benchmarks/accelerator.py --size tiny     # the same path on a CPU, seconds
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
from throughput import Setting, TqjaxRunner, make_prompts, matmul_peak, necessary_flops  # noqa: E402
from tqjax.api.decode import TQParams  # noqa: E402
from tqjax.models import ModelConfig, init_model  # noqa: E402

# dense bf16 peak FLOP/s by device kind (vendor figures, no sparsity)
PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "TPU v5 lite": 197e12,
         "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v4": 275e12, "TPU v6": 918e12}

SIZES = {
    "1b": dict(vocab_size=32000, d_model=2048, n_layers=16, n_heads=16, n_kv_heads=8, mlp_dim=5632, max_positions=512),
    "tiny": dict(vocab_size=512, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, mlp_dim=128, max_positions=256),
}


def device_peak(device) -> tuple[float | None, str]:
    for name, peak in PEAKS.items():
        if name.lower() in device.device_kind.lower():
            return peak, f"vendor dense bf16 peak of {name}"
    return None, "unknown device kind: MFU against the measured bf16 matmul rate only"


def bf16_matmul_rate(n=8192 if jax.default_backend() != "cpu" else 1024, reps=5) -> float:
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="1b")
    p.add_argument("--batches", default="16,64")
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--horizon", type=int, default=20)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = p.parse_args(argv)

    device = jax.devices()[0]
    peak, peak_source = device_peak(device)
    measured = bf16_matmul_rate()
    params = build(args.size)
    n_params = sum(x.size for x in jax.tree.leaves(params.sft.params))
    print(f"device: {device.device_kind} ({jax.default_backend()}), jax {jax.__version__}; "
          f"model: {n_params / 1e9:.2f}B params x 3 (sft, baseline, reward), bfloat16")
    print(f"bf16 matmul measured: {measured / 1e12:.1f} TFLOP/s; peak used for MFU: "
          f"{'%.0f TFLOP/s' % (peak / 1e12) if peak else 'n/a'} ({peak_source})")
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
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
    os.makedirs(args.out, exist_ok=True)
    kind = device.device_kind.replace(" ", "-")
    path = os.path.join(args.out, f"accelerator-{kind}-{datetime.date.today().isoformat()}.json")
    with open(path, "w") as f:
        json.dump(dict(device=device.device_kind, backend=jax.default_backend(), jax=jax.__version__,
                       params_per_model=int(n_params), peak_flops=peak, peak_source=peak_source,
                       measured_bf16_matmul_flops=measured, rows=rows), f, indent=2)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
