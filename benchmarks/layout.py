"""The layer layout (`DecodeConfig.layers`) on the real SmolLM2-135M: TQ* with its 30 layers run as
one `lax.scan` over stacked weights against the same layers unrolled from per-layer weights, side by
side in one run, the tokens asserted equal (issues 21 and 23).

The models are `benchmarks/real.py`'s (the cached tqjax SmolLM2 as SFT and baseline, the same
backbone with a scalar head as the reward model). For each layout: lowering + compiling the TQ*
program, then its steady state (the two layouts' timed runs alternate, median of ``--reps``), and
the compiled program's memory.

    .venv/bin/python benchmarks/layout.py                       # 4 review prefixes, k=10, H=20, 16 tokens
    .venv/bin/python benchmarks/layout.py --layers 8 --new-tokens 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from real_models import CHECKPOINT, load_real, prompts  # noqa: E402
from throughput import Setting, TqjaxRunner, decode_config, first_difference  # noqa: E402
from tqjax.api.decode import TQParams  # noqa: E402

LAYOUTS = ("scan", "unroll")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=CHECKPOINT)
    p.add_argument("--layers", type=int, default=None, help="cut the model to its first LAYERS layers")
    p.add_argument("--kind", default="review", choices=["review", "chat"])
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--horizon", type=int, default=20)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args(argv)
    sft, bl, rm = load_real(a.checkpoint, a.layers)
    params = TQParams(sft=sft, baseline=bl, reward=rm)
    ps = prompts(sft.tokenizer, a.kind, a.prompts)
    s = Setting(prompts=len(ps), k=a.k, horizon=a.horizon, new_tokens=a.new_tokens)
    runners, times, tokens = {}, {layout: [] for layout in LAYOUTS}, {}
    for layout in LAYOUTS:
        runners[layout] = TqjaxRunner(params, ps, s, decode_config(s).replace(layers=layout))
        print(f"  {layout}: compiled in {runners[layout].compile_s:.1f} s", flush=True)
    for _ in range(a.reps):
        for layout in LAYOUTS:
            t = time.perf_counter()
            tokens[layout] = runners[layout]()
            times[layout].append(time.perf_counter() - t)
    diff = first_difference(tokens["scan"], tokens["unroll"])
    sec = {layout: statistics.median(times[layout]) for layout in LAYOUTS}
    load = os.getloadavg()[0]
    print(f"\n### Layer layout, TQ* on SmolLM2-135M ({sft.config.n_layers} layers; {len(ps)} {a.kind} prompts, "
          f"k={a.k}, H={a.horizon}, {a.new_tokens} new tokens; load average {load:.1f} at the end)\n")
    print("| layers | compile s | steady s (median of %d) | tok/s | speed vs scan | compiled MiB |" % a.reps)
    print("|---|---:|---:|---:|---:|---:|")
    for layout in LAYOUTS:
        r = runners[layout]
        print(f"| {layout} | {r.compile_s:.1f} | {sec[layout]:.2f} | {len(ps) * a.new_tokens / sec[layout]:.2f} | "
              f"**{sec['scan'] / sec[layout]:.2f}x** | {r.compiled_mib:.0f} |")
    print(f"\ntokens: {'the same' if diff is None else 'DIFFER ' + diff}")
    assert diff is None, "the layouts gave different tokens"


if __name__ == "__main__":
    main()
