"""TQ* decoding throughput, side by side: tqjax against two PyTorch implementations, in one run.

Random SFT, baseline and reward models (Llama-style d=256, 4 layers, vocab 1024, and a GPT-NeoX
variant of the same size) are saved with ``save_pretrained`` and loaded into both stacks. The
same prompts are decoded with TQ* (k candidates of π_sft, greedy rollouts of H tokens from the
baseline, α=1, greedy selection, ``ignore_eos``) by

- ``tqjax``: `tqjax.decode`'s compiled program (`tqjax.decoding.engine.decode_arrays`);
- ``torch-authors``: `reference_torch.tq_authors_style`, one prompt at a time, prefix re-encoded
  per candidate per step (run on the first ``--authors-prompts`` prompts only: it is sequential
  over prompts, so its tokens/s does not depend on how many prompts there are);
- ``torch-batched``: `reference_torch.tq_batched`, all prompts at once, prefix caches copied.

The generated tokens are compared first; where they differ the speeds are not compared. Then it
prints tokens/s, the ratio tqjax / implementation, tqjax's necessary-FLOPs rate as a share of the
float32 matmul peak measured in the same run, compile time and peak memory.

    python benchmarks/throughput.py            # headline: 16 prompts x 128 tokens, llama + neox
    python benchmarks/throughput.py --quick    # a small setting, a minute or so
    python benchmarks/throughput.py --full     # headline + one-factor sweep (long on 2 cores)
    python benchmarks/throughput.py --variable # shipped task, EOS on: static vs continuous batching
                                               # (`variable_length.py`)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import threading
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tqjax  # noqa: E402
from reference_torch import random_hf_model, tq_authors_style, tq_batched  # noqa: E402
from tqjax.api.decode import TQParams, prepare  # noqa: E402
from tqjax.decoding import DecodeConfig, Knobs, engine, plan_for  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Setting:
    arch: str = "llama"
    prompts: int = 16
    prompt_len: int = 128
    k: int = 10
    horizon: int = 20
    new_tokens: int = 32
    size: str = "bench"

    def label(self):
        return (f"{self.arch} B={self.prompts} T={self.prompt_len} k={self.k} H={self.horizon} "
                f"N={self.new_tokens}")


# -- models and prompts ---------------------------------------------------------------------------

def build_models(arch, size="bench", seed=0):
    """(torch sft, baseline, reward), (tqjax TQParams) with the same random weights."""
    hf = (random_hf_model(arch, "lm", seed, size), random_hf_model(arch, "lm", seed + 1, size),
          random_hf_model(arch, "reward", seed + 2, size))
    loaded = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, m in zip(("sft", "baseline", "reward"), hf):
            m.save_pretrained(os.path.join(tmp, name), safe_serialization=True)
            loaded.append(tqjax.load(os.path.join(tmp, name)))
    return hf, TQParams(sft=loaded[0], baseline=loaded[1], reward=loaded[2])


def make_prompts(n, length, vocab, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(3, vocab, (n, length)).tolist()   # no PAD / BOS / EOS inside prompts


def decode_config(s: Setting) -> DecodeConfig:
    return DecodeConfig(method="tq", k=s.k, alpha=1.0, horizon=s.horizon, rollouts=1,
                        rollout_temperature=0.0, proposal="sft", select="greedy",
                        max_new_tokens=s.new_tokens, ignore_eos=True)


# -- measurement helpers --------------------------------------------------------------------------

class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 2 ms by a thread."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def mib(self):
        return (self.peak - self.base) / 2**20

    @staticmethod
    def _rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _poll(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())


def matmul_peak(n=2048, reps=5):
    """Float32 matmul rate of this machine right now, FLOP/s (median of ``reps``)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        dot(a, b).block_until_ready()
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times)


def token_forward_flops(model, ctx: int, with_head: bool = True) -> int:
    """FLOPs of one token through ``model`` against ``ctx`` cached positions: 2 × its matmul
    weights (the LM head or the reward head only ``with_head``) + 4·L·N·head_dim·ctx (scores and
    the weighted sum of values)."""
    c = model.config
    D, hd = c.d_model, c.head_dim
    mlp = (3 if c.arch == "llama" else 2) * D * c.mlp_dim
    layer = D * c.n_heads * hd * 2 + 2 * D * c.n_kv_heads * hd + mlp
    head = (D * c.vocab_size if c.kind == "lm" else D) if with_head else 0
    return 2 * (c.n_layers * layer + head) + 4 * c.n_layers * c.n_heads * hd * ctx


def necessary_flops(params: TQParams, s: Setting) -> float:
    """FLOPs of the work TQ* cannot avoid (docs/design.md, "Cost and memory"), for all prompts.

    Per committed token and row: k·H baseline and k·(H+1) reward token-forwards against the
    cached prefix, and one append per model; plus the prompt prefill of each model. A
    token-forward is `token_forward_flops`; the LM head counts where the logits are used (not
    for prompt tokens other than the last).
    """
    per_token = token_forward_flops
    T, H, k = s.prompt_len, s.horizon, s.k
    total = 0.0
    for m in (params.sft, params.baseline, params.reward):
        total += sum(per_token(m, c, with_head=(c == T)) for c in range(1, T + 1))
    for t in range(s.new_tokens):
        P = T + t
        total += k * sum(per_token(params.baseline, P + h) for h in range(1, H + 1))
        total += k * sum(per_token(params.reward, P + h) for h in range(1, H + 2))
        total += sum(per_token(m, P + 1) for m in (params.sft, params.baseline, params.reward))
    return total * s.prompts


# -- the three implementations --------------------------------------------------------------------

class TqjaxRunner:
    def __init__(self, params, prompts, s: Setting, config: DecodeConfig | None = None):
        config = decode_config(s) if config is None else config
        arrays, _ = prepare(params, prompts, config)
        self.args = (params, arrays["tokens_BT"], arrays["start_B"], arrays["keys_B"], arrays["live_B"],
                     Knobs.from_config(config))
        self.plan, self.P, self.N = plan_for(params, config), len(prompts), s.new_tokens
        t = time.perf_counter()
        self.compiled = engine.decode_arrays.lower(*self.args, plan=self.plan).compile()
        self.compile_s = time.perf_counter() - t
        mem = self.compiled.memory_analysis()
        self.compiled_mib = None if mem is None else (
            mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes) / 2**20

    def __call__(self):
        out = self.compiled(*self.args)
        tokens = np.asarray(jax.device_get(out["tokens_BN"]))
        return tokens[:self.P, :self.N].tolist()


def run_torch(fn, hf, prompts, s: Setting, threads):
    torch.set_num_threads(threads)
    return fn(*hf, prompts, k=s.k, alpha=1.0, horizon=s.horizon, max_new_tokens=s.new_tokens)


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            j = next(j for j, (u, v) in enumerate(zip(x, y)) if u != v)
            return f"prompt {i} step {j}: {x[j]} vs {y[j]}"
    return None


def compare(s: Setting, models=None, authors_prompts=2, reps=1, torch_reps=1, batched=True, log=print,
            torch_threads=1):
    """Run every implementation on setting ``s``; returns a dict of results (used by the tests)."""
    hf, params = models if models is not None else build_models(s.arch, s.size)
    prompts = make_prompts(s.prompts, s.prompt_len, params.sft.vocab_size)
    res = dict(setting=s, impl={}, agree={})
    with PeakRSS() as rss:
        runner = TqjaxRunner(params, prompts, s)
        t = time.perf_counter()
        tokens = runner()
        first = time.perf_counter() - t
    res["impl"]["tqjax"] = dict(tokens=tokens, compile_s=runner.compile_s, rss_mib=rss.mib,
                                compiled_mib=runner.compiled_mib, prompts=s.prompts, times=[first])
    plan = [("torch-authors", tq_authors_style, prompts[:authors_prompts])] if authors_prompts else []
    if batched:
        plan.append(("torch-batched", tq_batched, prompts))
    # interleave: tqjax, then each torch implementation, repeated
    for rep in range(max(reps, torch_reps)):
        if 0 < rep < reps:
            t = time.perf_counter()
            runner()
            res["impl"]["tqjax"]["times"].append(time.perf_counter() - t)
        if rep >= torch_reps:
            continue
        for name, fn, ps in plan:
            with PeakRSS() as rss:
                t = time.perf_counter()
                out = run_torch(fn, hf, ps, s, torch_threads)
                dt = time.perf_counter() - t
            entry = res["impl"].setdefault(name, dict(tokens=out, compile_s=0.0, rss_mib=0.0,
                                                      compiled_mib=None, prompts=len(ps), times=[]))
            entry["times"].append(dt)
            entry["rss_mib"] = max(entry["rss_mib"], rss.mib)
        log(f"  [{s.label()}] rep {rep + 1} done")
    for name, entry in res["impl"].items():
        entry["tok_s"] = entry["prompts"] * s.new_tokens / statistics.median(entry["times"])
        if name != "tqjax":
            res["agree"][name] = first_difference(entry["tokens"], tokens[:entry["prompts"]])
    res["flops"] = necessary_flops(params, s)
    return res


# -- reporting ------------------------------------------------------------------------------------

def report(res, peak):
    s, impl = res["setting"], res["impl"]
    j = impl["tqjax"]
    print(f"\n### {s.label()}\n")
    for name, diff in res["agree"].items():
        n = impl[name]["prompts"]
        print(f"- tokens {name} vs tqjax ({n} prompts): " + ("agree" if diff is None else f"DIFFER at {diff}"))
    rate = res["flops"] / statistics.median(j["times"])
    print(f"- tqjax necessary FLOPs {res['flops'] / 1e9:.1f} G, rate {rate / 1e9:.1f} GFLOP/s = "
          f"{100 * rate / peak:.1f}% of the measured matmul peak {peak / 1e9:.1f} GFLOP/s")
    if j["compiled_mib"] is not None:
        print(f"- tqjax compiled program memory (args + outputs + temps): {j['compiled_mib']:.1f} MiB")
    print()
    print("| implementation | prompts run | tokens/s | tqjax / this | compile s | peak RSS increase MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, e in impl.items():
        same = name == "tqjax" or res["agree"].get(name) is None
        ratio = f"{j['tok_s'] / e['tok_s']:.1f}x" if same else "n/a (tokens differ)"
        print(f"| {name} | {e['prompts']} | {e['tok_s']:.2f} | {ratio} | {e['compile_s']:.1f} | {e['rss_mib']:.0f} |")
    sys.stdout.flush()


def sweep_settings(base: Setting, new_tokens: int):
    out = []
    for field, values in (("prompt_len", (32, 512)), ("k", (4, 32)), ("horizon", (5,)), ("prompts", (1, 64))):
        for v in values:
            out.append(dataclasses.replace(base, new_tokens=new_tokens, **{field: v}))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description="TQ* throughput: tqjax vs PyTorch, side by side.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="one small llama setting (about a minute)")
    g.add_argument("--full", action="store_true", help="headline settings plus the sweep")
    g.add_argument("--variable", action="store_true",
                   help="variable-length responses (shipped task, 128 prompts, EOS on): static "
                        "batches vs continuous batching at 16 and 64 rows (variable_length.py)")
    p.add_argument("--archs", nargs="+", default=["llama", "neox"])
    p.add_argument("--authors-prompts", type=int, default=1,
                   help="prompts given to the one-prompt-at-a-time loop (0: skip it)")
    p.add_argument("--reps", type=int, default=1, help="tqjax repetitions (median)")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch.set_num_threads for the torch runs (default 1: under load torch ran "
                        "2-20x slower with 2 threads; on a quiet machine 2 is faster, so run both)")
    p.add_argument("--sweep-new-tokens", type=int, default=8)
    a = p.parse_args(argv)
    if a.variable:
        import variable_length
        return variable_length.main([])
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    print(f"# TQ* throughput — {os.cpu_count()} cores, jax {jax.__version__}, torch {torch.__version__} "
          f"({a.torch_threads} threads), float32 CPU")
    if a.quick:
        settings = [Setting(arch="llama", prompts=4, prompt_len=32, k=4, horizon=5, new_tokens=8)]
    else:
        settings = [Setting(arch=arch) for arch in a.archs]
    peak = max(matmul_peak() for _ in range(2))
    print(f"matmul peak (jnp.dot 2048x2048 float32): {peak / 1e9:.1f} GFLOP/s")
    for s in settings:
        report(compare(s, authors_prompts=a.authors_prompts, reps=a.reps, log=log,
                       torch_threads=a.torch_threads), peak)
    if a.full:
        print("\n## Sweep (one factor at a time from llama B=16 T=128 k=10 H=20; "
              f"{a.sweep_new_tokens} new tokens; torch-batched only)")
        models = build_models("llama")
        rows = []
        for s in sweep_settings(settings[0], a.sweep_new_tokens):
            res = compare(s, models=models, authors_prompts=0, reps=a.reps, log=log,
                          torch_threads=a.torch_threads)
            j, t = res["impl"]["tqjax"], res["impl"]["torch-batched"]
            rate = res["flops"] / statistics.median(j["times"])
            rows.append((s, j, t, res["agree"]["torch-batched"], rate))
        print("\n| B | T | k | H | tqjax tok/s | torch-batched tok/s | ratio | % matmul peak | compile s | tokens |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for s, j, t, diff, rate in rows:
            print(f"| {s.prompts} | {s.prompt_len} | {s.k} | {s.horizon} | {j['tok_s']:.1f} | {t['tok_s']:.2f} "
                  f"| {j['tok_s'] / t['tok_s']:.1f}x | {100 * rate / peak:.1f}% | {j['compile_s']:.1f} "
                  f"| {'agree' if diff is None else 'DIFFER ' + diff} |")
        print(f"\nmatmul peak re-measured at the end: {matmul_peak() / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
