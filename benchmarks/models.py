"""Model-layer speed: tqjax against PyTorch transformers on the same CPU, in the same run.

For a random Llama-style model (d=256, 4 layers, 8 query / 2 kv heads, vocab 1024), saved with
``save_pretrained`` and loaded into both stacks, it prints for batch 1, 8 and 64:

- prefill tokens/s of a 128-token prompt;
- decode-step latency: one token per row appended to the cache (tqjax: stacked ``[L, B, K, S, H]``,
  the layers as one scan), averaged over ``--steps`` steps.

Repetitions of the implementations are interleaved and medians reported, so that the ratios hold
on a shared machine. Usage: ``python benchmarks/models.py [--batches 1 8 64] [--reps 5]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tqjax  # noqa: E402
from reference_torch import random_hf_model  # noqa: E402


# -- one measurement each -------------------------------------------------------------------------

def _median(xs):
    return statistics.median(xs)


class JaxBench:
    def __init__(self, model, prompt, steps):
        self.model, self.prompt, self.steps = model, prompt, steps
        self.prefill = jax.jit(type(model).prefill)
        self.append = jax.jit(type(model).append, donate_argnums=(2,))

    def cache(self, B):
        return self.model.init_cache(B, self.prompt + self.steps + 1)

    def time_prefill(self, tokens_BT):
        B = tokens_BT.shape[0]
        cache, start = self.cache(B), jnp.zeros((B,), jnp.int32)
        jax.block_until_ready(cache)
        t = time.perf_counter()
        out, cache = self.prefill(self.model, tokens_BT, start, cache)
        jax.block_until_ready(out)
        return time.perf_counter() - t, out, cache

    def time_decode(self, tokens_BT, next_BN):
        _, _, cache = self.time_prefill(tokens_BT)
        t = time.perf_counter()
        for i in range(self.steps):
            out, cache = self.append(self.model, next_BN[:, i], cache)
        jax.block_until_ready(out)
        return (time.perf_counter() - t) / self.steps, out


class TorchBench:
    def __init__(self, model, steps, threads):
        self.model, self.steps, self.threads = model, steps, threads

    @torch.inference_mode()
    def time_prefill(self, tokens_BT):
        torch.set_num_threads(self.threads)
        t = time.perf_counter()
        out = self.model(input_ids=tokens_BT, use_cache=True)
        return time.perf_counter() - t, out.logits[:, -1], out.past_key_values

    @torch.inference_mode()
    def time_decode(self, tokens_BT, next_BN):
        _, _, past = self.time_prefill(tokens_BT)
        t = time.perf_counter()
        for i in range(self.steps):
            out = self.model(input_ids=next_BN[:, i:i + 1], past_key_values=past, use_cache=True)
            past = out.past_key_values
        return (time.perf_counter() - t) / self.steps, out.logits[:, -1]


def run(batches, prompt, steps, reps, seed=0):
    threads = sorted({os.cpu_count(), 1}, reverse=True)
    hf = random_hf_model("llama", "lm", seed)
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp, safe_serialization=True)
        model = tqjax.load(tmp)
    jb, tbs = JaxBench(model, prompt, steps), [TorchBench(hf, steps, n) for n in threads]
    rng = np.random.default_rng(seed)
    rows = []
    for B in batches:
        ids = rng.integers(3, model.vocab_size, (B, prompt + steps))
        tok_j, nxt_j = jnp.asarray(ids[:, :prompt], jnp.int32), jnp.asarray(ids[:, prompt:], jnp.int32)
        tok_t, nxt_t = torch.as_tensor(ids[:, :prompt]), torch.as_tensor(ids[:, prompt:])
        # warm-up (compiles) and parity of the last decode step's logits
        t0 = time.perf_counter()
        _, out_j, _ = jb.time_prefill(tok_j)
        _, out_jd = jb.time_decode(tok_j, nxt_j)
        compile_s = time.perf_counter() - t0
        _, out_t, _ = tbs[0].time_prefill(tok_t)
        _, out_td = tbs[0].time_decode(tok_t, nxt_t)
        diff = max(float(np.max(np.abs(np.asarray(out_j) - out_t.numpy()))),
                   float(np.max(np.abs(np.asarray(out_jd) - out_td.numpy()))))
        t = {name: [] for name in ["jp", "jd"] + [f"{x}{n}" for n in threads for x in ("tp", "td")]}
        for _ in range(reps):   # interleaved: every repetition runs every variant back to back
            t["jp"].append(jb.time_prefill(tok_j)[0])
            for tb in tbs:
                t[f"tp{tb.threads}"].append(tb.time_prefill(tok_t)[0])
            t["jd"].append(jb.time_decode(tok_j, nxt_j)[0])
            for tb in tbs:
                t[f"td{tb.threads}"].append(tb.time_decode(tok_t, nxt_t)[0])
        m = {name: _median(v) for name, v in t.items()}
        row = dict(B=B, jp=B * prompt / m["jp"], jd=m["jd"] * 1e3, diff=diff,
                   compile=compile_s)
        for n in threads:
            row[f"tp{n}"], row[f"td{n}"] = B * prompt / m[f"tp{n}"], m[f"td{n}"] * 1e3
        row["tp"] = max(row[f"tp{n}"] for n in threads)
        row["td"] = min(row[f"td{n}"] for n in threads)
        rows.append(row)
        print(f"batch {B}: done ({reps} reps, max |Δ logits| {diff:.1e})", file=sys.stderr, flush=True)
    return rows


def print_table(rows, prompt, steps, reps):
    threads = sorted({os.cpu_count(), 1}, reverse=True)
    print(f"Llama-style d=256, 4 layers, 8/2 heads, vocab 1024, float32; prompt {prompt}, "
          f"{steps} decode steps; median of {reps} interleaved reps; {os.cpu_count()} cores; "
          f"jax {jax.__version__}, torch {torch.__version__}")
    print()
    tcols = " | ".join(f"torch {n}T" for n in threads)
    align = "|".join(["---:"] * len(threads))
    print(f"Prefill, tokens/s\n\n| batch | tqjax | {tcols} | tqjax / best torch |\n|---:|---:|{align}|---:|")
    for r in rows:
        tvals = " | ".join(f"{r[f'tp{n}']:,.0f}" for n in threads)
        print(f"| {r['B']} | {r['jp']:,.0f} | {tvals} | {r['jp'] / r['tp']:.2f}x |")
    print(f"\nDecode step (one token per row), ms\n\n| batch | tqjax | {tcols} | best torch / tqjax "
          f"| max abs diff logits |\n|---:|---:|{align}|---:|---:|")
    for r in rows:
        tvals = " | ".join(f"{r[f'td{n}']:.2f}" for n in threads)
        print(f"| {r['B']} | {r['jd']:.2f} | {tvals} | {r['td'] / r['jd']:.2f}x | {r['diff']:.1e} |")
    print("\nRatios > 1: tqjax faster. torch nT: torch.set_num_threads(n); 'best torch' is the faster"
          " thread count at that batch (on a shared machine one thread is often faster).")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args(argv)
    rows = run(a.batches, a.prompt, a.steps, a.reps)
    print_table(rows, a.prompt, a.steps, a.reps)


if __name__ == "__main__":
    main()
