"""Where TQ*'s time goes on the real SmolLM2-135M (issue 23): one traced call of the compiled TQ*
program, every XLA:CPU thunk's time summed by kind and by the tqjax source line it came from,
beside the rate the same matmuls reach alone.

The models and prompts are `benchmarks/real.py`'s (the cached tqjax SmolLM2 as SFT and baseline,
its backbone with a scalar head as the reward model). The program is compiled ahead of time,
called once to warm up, then called once under `jax.profiler.trace`; the trace's thunk events are
matched to the optimized HLO (`compiled.as_text()`: each instruction's metadata names the tqjax
function and line it was traced from).

Two reference rates put the shares in scale, measured in the same process:
- the matmul peak (`throughput.matmul_peak`: ``jnp.dot`` of two 2048² float32 matrices);
- the **matmul ceiling** at TQ*'s own shapes: the rollout's per-layer projections (q, k, v, o, gate,
  up, down) for ``prompts × k`` rows (and 4 times as many), and nothing else (no attention, norms
  or head); the weights read from the stacked arrays by a `lax.scan`, as the engine's scan path
  does, and from per-layer buffers, unrolled.

    .venv/bin/python benchmarks/profile_tq.py                          # 4 chat prompts, 30 layers
    .venv/bin/python benchmarks/profile_tq.py --layers 6 --layout unroll --new-tokens 2
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from real_models import CHECKPOINT, flops_of, load_real, prompts  # noqa: E402
from throughput import Setting, TqjaxRunner, decode_config, matmul_peak  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from tqjax.api.decode import TQParams  # noqa: E402

MARKERS = ("end:", "ThreadpoolListener", "ThunkExecutor", "SlinkyThreadPool")
KINDS = (("matmul", ("ynn", "xnn", "dot", "onednn", "convolution")),
         ("slice or copy", ("dynamic-slice", "dynamic-update-slice", "copy", "slice", "concatenate",
                            "transpose", "gather", "scatter", "pad")),
         ("reduction", ("reduce", "sort", "topk", "argmax")))


def thunk_times(call) -> tuple[collections.Counter, collections.Counter, float]:
    """``call()`` once under the profiler: (ns per thunk name, calls per name, wall seconds)."""
    with tempfile.TemporaryDirectory() as d:
        jax.profiler.start_trace(d)
        t = time.perf_counter()
        call()
        wall = time.perf_counter() - t
        jax.profiler.stop_trace()
        path = sorted(glob.glob(os.path.join(d, "**", "*.xplane.pb"), recursive=True))[-1]
        data = jax.profiler.ProfileData.from_file(path)
    ns, n = collections.Counter(), collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            if line.name == "python":
                continue
            for e in line.events:
                if not e.name.startswith(MARKERS):
                    ns[e.name] += e.duration_ns
                    n[e.name] += 1
    return ns, n, wall


def sources(hlo: str) -> dict[str, str]:
    """Instruction name -> ``function:line`` of the tqjax code it was traced from (its stack frame
    in the optimized HLO's FileNames / FunctionNames / FileLocations / StackFrames tables)."""
    def table(title):
        m = re.search(rf"^{title}\n(.*?)(?:\n\n|\Z)", hlo, re.S | re.M)
        return {} if m is None else dict(re.findall(r"^(\d+) (.*)$", m.group(1), re.M))

    files, funcs, locs, frames = (table(t) for t in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"))

    def where(frame):
        seen = set()
        while frame and frame not in seen:          # innermost tqjax frame, walking out
            seen.add(frame)
            f = dict(re.findall(r"(\w+)=(\d+)", frames.get(frame, "")))
            loc = dict(re.findall(r"(\w+)=(\d+)", locs.get(f.get("file_location_id", ""), "")))
            file = files.get(loc.get("file_name_id", ""), "").strip('"')
            if "tqjax" in file:
                return f"{os.path.basename(file)}:{loc['line']} {funcs.get(loc['function_name_id'], '').strip(chr(34))}"
            frame = f.get("parent_frame_id")
        return "?"

    out = {}
    for name, frame in re.findall(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*?stack_frame_id=(\d+)", hlo, re.M):
        out[name] = where(frame)
    return out


def kind_of(name: str) -> str:
    return next((k for k, keys in KINDS if any(s in name for s in keys)), "elementwise or other")


def ceiling(params: TQParams, rows: int, split: bool = False, reps: int = 5) -> float:
    """FLOP/s of the rollout's per-layer projections alone for ``rows`` rows: every layer's
    q/k/v/o/gate/up/down weights, 20 steps in a loop (weights streamed from memory, not
    cache-resident). ``split=False`` reads them from the stacked arrays by a `lax.scan`, as the
    engine's scan path does; ``split=True`` from per-layer buffers made before the loop, unrolled."""
    p = params.baseline.params["layers"]
    names = [n for n in ("q_DNH", "k_DKH", "v_DKH", "o_NHD", "gate_DF", "up_DF", "down_FD") if n in p]
    ws = {n: p[n].reshape(p[n].shape[0], -1, p[n].shape[-1]) if n in ("o_NHD", "down_FD") else
          p[n].reshape(p[n].shape[:2] + (-1,)) for n in names}
    x0 = jax.random.normal(jax.random.key(0), (rows, params.baseline.config.d_model), jnp.float32)
    steps = 20

    def layer(x, w):
        q, k, v = x @ w["q_DNH"], x @ w["k_DKH"], x @ w["v_DKH"]
        x = x + 1e-3 * (q @ w["o_NHD"]) + 1e-3 * (k.sum() + v.sum())
        h = jax.nn.silu(x @ w["gate_DF"]) * (x @ w["up_DF"])
        return x + 1e-3 * (h @ w["down_FD"]), None

    def run(ws, x):
        if not split:
            return jax.lax.fori_loop(0, steps, lambda _, x: jax.lax.scan(layer, x, ws)[0], x)
        per_layer = [jax.tree.map(lambda w: w[i], ws) for i in range(jax.tree.leaves(ws)[0].shape[0])]

        def step(_, x):
            for w in per_layer:
                x = layer(x, w)[0]
            return x
        return jax.lax.fori_loop(0, steps, step, x)

    run = jax.jit(run)
    run(ws, x0).block_until_ready()
    best = min(_timed(lambda: run(ws, x0).block_until_ready()) for _ in range(reps))
    return 2 * rows * steps * sum(w.size for w in ws.values()) / best


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=CHECKPOINT)
    p.add_argument("--layers", type=int, default=None, help="cut the model to its first LAYERS layers")
    p.add_argument("--layout", default="auto", choices=["auto", "scan", "unroll"], help="DecodeConfig.layers")
    p.add_argument("--kind", default="chat", choices=["review", "chat", "chat-long"])
    p.add_argument("--prompts", type=int, default=4, help="the set's prompts, repeated past its 4")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--horizon", type=int, default=20)
    p.add_argument("--new-tokens", type=int, default=4)
    p.add_argument("--top", type=int, default=25, help="thunks listed by time")
    a = p.parse_args(argv)
    sft, bl, rm = load_real(a.checkpoint, a.layers)
    params = TQParams(sft=sft, baseline=bl, reward=rm)
    ps = prompts(sft.tokenizer, a.kind, a.prompts)
    ps = (ps * a.prompts)[:a.prompts]      # more prompts than the set holds: its prompts again
    s = Setting(prompts=len(ps), k=a.k, horizon=a.horizon, new_tokens=a.new_tokens)
    runner = TqjaxRunner(params, ps, s, decode_config(s).replace(layers=a.layout))
    print(f"compiled in {runner.compile_s:.1f} s", flush=True)
    runner()
    untraced = _timed(runner)
    ns, calls, wall = thunk_times(runner)
    where = sources(runner.compiled.as_text())
    peak = max(matmul_peak() for _ in range(2))
    rows = len(ps) * a.k
    roofs = {(r, split): ceiling(params, r, split) for r in (rows, 4 * rows) for split in (False, True)}
    rate = flops_of(params, ps, s) / untraced
    op_s = sum(ns.values()) / 1e9
    load = os.getloadavg()[0]
    print(f"\n### TQ* profile: SmolLM2-135M, {sft.config.n_layers} layers ({a.layout}), {len(ps)} {a.kind} "
          f"prompts, k={a.k}, H={a.horizon}, {a.new_tokens} new tokens (load average {load:.1f})\n")
    print(f"- one call: {untraced:.2f} s untraced, {wall:.2f} s traced; thunk time summed over threads "
          f"{op_s:.2f} s")
    print(f"- necessary FLOPs / untraced time: {rate / 1e9:.1f} GFLOP/s = **{100 * rate / peak:.1f} %** of the "
          f"matmul peak ({peak / 1e9:.1f} GFLOP/s)")
    print("\nMatmul ceiling: the rollout's projections alone (`ceiling`), GFLOP/s and share of the peak:\n")
    print("| rows | stacked weights, scanned | per-layer buffers, unrolled |\n|---:|---:|---:|")
    for r in (rows, 4 * rows):
        print(f"| {r} | " + " | ".join(f"{roofs[r, split] / 1e9:.1f} ({100 * roofs[r, split] / peak:.1f} %)"
                                       for split in (False, True)) + " |")
    print()
    by_kind = collections.Counter()
    for name, t in ns.items():
        by_kind[kind_of(name)] += t
    print("| thunk kind | s | share of thunk time |\n|---|---:|---:|")
    for k, t in by_kind.most_common():
        print(f"| {k} | {t / 1e9:.2f} | {100 * t / 1e9 / op_s:.1f} % |")
    by_line = collections.Counter()
    for name, t in ns.items():
        by_line[(kind_of(name), where.get(name, "?"))] += t
    print("\n| kind | tqjax source | s | share |\n|---|---|---:|---:|")
    for (k, w), t in by_line.most_common(a.top):
        print(f"| {k} | {w} | {t / 1e9:.2f} | {100 * t / 1e9 / op_s:.1f} % |")
    print(f"\n| thunk | kind | tqjax source | calls | s | share |\n|---|---|---|---:|---:|---:|")
    for name, t in ns.most_common(a.top):
        print(f"| {name} | {kind_of(name)} | {where.get(name, '?')} | {calls[name]} | {t / 1e9:.3f} | "
              f"{100 * t / 1e9 / op_s:.1f} % |")


if __name__ == "__main__":
    main()
