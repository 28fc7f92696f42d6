"""Compile time of the whole TQ* program against depth, and steady-state speed, old code vs new.

Part 1: the TQ* program (`engine.decode_arrays`: prefill, the decoding `while_loop`, the vmapped
candidates and their rollouts) on random Llama models (d=64, 4 heads / 2 kv heads, MLP 256, vocab
512; k=4, H=4, 4 prompts of 32 tokens, 8 new tokens) at 2, 8, 32 and 80 layers: seconds to lower
and to compile, each in a fresh process (no compilation cache).

Part 2: steady-state tokens/s of compiled TQ* programs at 4 layers, interleaved A/B: one worker
process per code version (each compiles once), the parent alternates timed runs between them
(ABBA order) and reports medians and the ratio; both must produce the same tokens.

``--old DIR`` is a checkout of the code before the change (e.g. ``git worktree add --detach
/tmp/tqjax_old <commit>``); it is measured side by side with this checkout.

    .venv/bin/python benchmarks/compile_time.py [--old /tmp/tqjax_old] [--layers 2 8 32 80] [--rounds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(d_model=64, n_heads=4, n_kv_heads=2, mlp_dim=256, vocab=512, k=4, horizon=4,
             prompts=4, prompt_len=32, new=8)
BENCH = dict(d_model=256, n_heads=4, n_kv_heads=4, mlp_dim=1024, vocab=1024, k=10, horizon=20,
             prompts=4, prompt_len=128, new=16)


# -- inside a worker process (its PYTHONPATH is the code under test) --------------------------------

def _program(n_layers: int, s: dict):
    import jax
    import numpy as np
    import tqjax
    from tqjax.api.decode import TQParams, prepare
    from tqjax.decoding import DecodeConfig, Knobs, engine, plan_for
    from tqjax.models import ModelConfig, init_model

    jax.config.update("jax_enable_compilation_cache", False)
    root = os.environ["PYTHONPATH"]
    assert os.path.abspath(tqjax.__file__).startswith(root), (tqjax.__file__, root)   # the code under test
    cfg = ModelConfig.llama(vocab_size=s["vocab"], d_model=s["d_model"], n_layers=n_layers, n_heads=s["n_heads"],
                            n_kv_heads=s["n_kv_heads"], mlp_dim=s["mlp_dim"], max_positions=256, eos_token_id=2)
    ks = jax.random.split(jax.random.key(0), 3)
    params = TQParams(init_model(cfg, ks[0]), init_model(cfg, ks[1]), init_model(cfg.replace(kind="reward"), ks[2]))
    config = DecodeConfig(method="tq", k=s["k"], horizon=s["horizon"], max_new_tokens=s["new"], ignore_eos=True)
    rng = np.random.default_rng(0)
    prompts = rng.integers(3, s["vocab"], size=(s["prompts"], s["prompt_len"])).tolist()
    arrays, _ = prepare(params, prompts, config)
    args = (params, arrays["tokens_BT"], arrays["start_B"], arrays["keys_B"], arrays["live_B"],
            Knobs.from_config(config))
    return args, plan_for(params, config), engine


def worker_compile(n_layers: int) -> None:
    args, plan, engine = _program(n_layers, SMALL)
    t0 = time.perf_counter()
    lowered = engine.decode_arrays.lower(*args, plan=plan)
    t1 = time.perf_counter()
    lowered.compile()
    t2 = time.perf_counter()
    print(json.dumps(dict(lower_s=t1 - t0, compile_s=t2 - t1, hlo_lines=len(lowered.as_text().splitlines()))))


def _setting(name: str) -> dict:
    """``small`` or ``bench:P`` (the bench model with P prompts)."""
    if name == "small":
        return SMALL
    return dict(BENCH, prompts=int(name.split(":")[1]))


def worker_run(n_layers: int, setting: str) -> None:
    """Compile once, then one timed run per line read from stdin."""
    import jax
    import numpy as np
    args, plan, engine = _program(n_layers, _setting(setting))
    program = engine.decode_arrays.lower(*args, plan=plan).compile()
    jax.block_until_ready(program(*args))
    print("ready", flush=True)
    for _ in sys.stdin:
        t = time.perf_counter()
        out = jax.block_until_ready(program(*args))
        seconds = time.perf_counter() - t
        tokens = np.asarray(out["tokens_BN"]).tolist()
        print(json.dumps(dict(seconds=seconds, tokens=tokens)), flush=True)


# -- the parent ---------------------------------------------------------------------------------------

def _env(root: str) -> dict:
    return dict(os.environ, PYTHONPATH=root, JAX_PLATFORMS="cpu")


def measure_compile(root: str, n_layers: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker-compile", str(n_layers)], env=_env(root),
                         capture_output=True, text=True, check=True, cwd=root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ab(roots: dict, setting: str, rounds: int) -> dict:
    procs = {name: subprocess.Popen([sys.executable, __file__, "--worker-run", "4", setting], env=_env(root),
                                    cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for name, root in roots.items()}
    for p in procs.values():
        assert p.stdout.readline().strip() == "ready"
    names = list(procs)
    times, tokens = {n: [] for n in names}, {}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):          # ABBA: neither always goes first
            procs[name].stdin.write("run\n")
            procs[name].stdin.flush()
            res = json.loads(procs[name].stdout.readline())
            times[name].append(res["seconds"])
            tokens[name] = res["tokens"]
    for p in procs.values():
        p.stdin.close()
        p.wait()
    s = _setting(setting)
    generated = s["prompts"] * s["new"]
    return dict(median={n: statistics.median(v) for n, v in times.items()},
                tok_s={n: generated / statistics.median(v) for n, v in times.items()},
                spread={n: (min(v), max(v)) for n, v in times.items()},
                same_tokens=len({json.dumps(t) for t in tokens.values()}) == 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default=None, help="a checkout of the code before the change, measured side by side")
    parser.add_argument("--layers", type=int, nargs="*", default=[2, 8, 32, 80])
    parser.add_argument("--old-layers", type=int, nargs="+", default=None,
                        help="depths to compile with the old code (default: --layers)")
    parser.add_argument("--rounds", type=int, default=8, help="timed runs per code version in part 2")
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 4, 16],
                        help="prompts per batch of the d=256 setting in part 2")
    parser.add_argument("--skip-small", action="store_true", help="part 2 without the d=64 setting")
    parser.add_argument("--worker-compile", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-run", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_compile is not None:
        return worker_compile(args.worker_compile)
    if args.worker_run is not None:
        return worker_run(int(args.worker_run[0]), args.worker_run[1])

    roots = {"new": HERE} if args.old is None else {"old": os.path.abspath(args.old), "new": HERE}
    s = SMALL
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; part 1: Llama d={s['d_model']}, "
          f"{s['n_heads']}/{s['n_kv_heads']} heads, MLP {s['mlp_dim']}, V={s['vocab']}; TQ* k={s['k']}, "
          f"H={s['horizon']}, {s['prompts']} prompts x {s['prompt_len']} tokens, {s['new']} new tokens")
    print("\n| layers | " + " | ".join(f"{n} lower s | {n} compile s | {n} total s" for n in roots)
          + (" | new / old total |" if "old" in roots else " | total / 2 layers |"))
    print("|---:|" + "---:|" * (3 * len(roots) + 1))
    first = None
    for L in args.layers:
        row = {}
        for name, root in roots.items():
            if name == "old" and args.old_layers is not None and L not in args.old_layers:
                continue
            row[name] = measure_compile(root, L)
            row[name]["total_s"] = row[name]["lower_s"] + row[name]["compile_s"]
        first = first or row["new"]["total_s"]
        cells = " | ".join(f"{row[n]['lower_s']:.2f} | {row[n]['compile_s']:.2f} | {row[n]['total_s']:.2f}"
                           if n in row else "– | – | –" for n in roots)
        last = (f"{row['new']['total_s'] / row['old']['total_s']:.2f}x" if "old" in row
                else "–") if "old" in roots else f"{row['new']['total_s'] / first:.2f}x"
        print(f"| {L} | {cells} | {last} |", flush=True)

    if "old" not in roots:
        return
    print(f"\nPart 2: steady state at 4 layers, {args.rounds} interleaved runs each (ABBA), median")
    print("\n| setting | old tokens/s | new tokens/s | new / old | old min–max s | new min–max s | same tokens |")
    print("|---|---:|---:|---:|---:|---:|---|")
    settings = ([] if args.skip_small else ["small"]) + [f"bench:{b}" for b in args.batches]
    for setting in settings:
        s = _setting(setting)
        res = ab(roots, setting, args.rounds)
        label = (f"d={s['d_model']} k={s['k']} H={s['horizon']} {s['prompts']}x{s['prompt_len']} "
                 f"+{s['new']}")
        o, n = res["tok_s"]["old"], res["tok_s"]["new"]
        so, sn = res["spread"]["old"], res["spread"]["new"]
        print(f"| {label} | {o:.1f} | {n:.1f} | {n / o:.3f}x | {so[0]:.2f}–{so[1]:.2f} | {sn[0]:.2f}–{sn[1]:.2f} "
              f"| {res['same_tokens']} |", flush=True)


if __name__ == "__main__":
    main()
