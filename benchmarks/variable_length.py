"""Variable-length responses: static batches against continuous batching, in one run.

The shipped task's held-out prompts (the first 128 of `tqjax eval`'s test stream), the shipped
models, EOS on. For each method (TQ* with k=10, H=20; greedy ``sft``) and each row count ``B``:

- ``static``: ``tqjax.decode`` on consecutive batches of ``B`` prompts (each batch runs until its
  longest row ends);
- ``continuous``: one ``tqjax.decode(..., batch_size=B)``, a finished row taking the next prompt.

``tq-text`` is TQ* with ``reward-bpe``, the reward model with its own tokenizer, so the text path
(`tqjax.decoding.cross_rows`) refills its slots.

The tokens of the two are compared first. Reported: tokens/s, the share of row-steps spent on live
rows, the ideal in-order gain (`ideal_gain`: static row-steps over the row-steps of refilling the
``B`` slots in prompt order at no cost, computed from the response lengths), the row-step gain
(static row-steps over the continuous run's, what the gain would be if every step cost the same),
the measured gain in wall time and its ratio to the ideal, and the refill overhead (host time
between chunks: fetching results, prefilling and inserting the next prompts). Both runs are warmed
up, then timed in turn for ``--repeats`` rounds (static, continuous, static, continuous, ...); each
keeps its fastest round, so a burst of load on a shared machine does not land on one side only.

    python benchmarks/throughput.py --variable              # 128 prompts, B = 16 and 64
    python benchmarks/variable_length.py --prompts 32 --rows 16 --methods sft
    python benchmarks/variable_length.py --prompts 64 --rows 16 --methods tq tq-text
"""

from __future__ import annotations

import argparse
import heapq
import os
import sys
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import jax  # noqa: E402

import tqjax  # noqa: E402
from tqjax.api.decode import TQParams  # noqa: E402
from tqjax.cli.options import SHIPPED  # noqa: E402
from tqjax.decoding import DecodeConfig  # noqa: E402
from tqjax.decoding.continuous import Stats  # noqa: E402

EVAL_SEED = 30_000     # `tqjax eval`'s held-out prompts
METHODS = {"tq": DecodeConfig(method="tq", k=10, horizon=20, max_new_tokens=48),
           "sft": DecodeConfig(method="sft", max_new_tokens=48)}
METHODS["tq-text"] = METHODS["tq"]      # TQ* with reward-bpe, a reader with its own tokenizer
READER = {"tq-text": "reward-bpe"}


def ideal_gain(lengths, rows: int) -> tuple[float, int, int]:
    """``(gain, static row-steps, ideal row-steps)`` of ``rows`` slots refilled in prompt order at
    no cost: each prompt starts when the earliest slot frees, the run ends when the last ends."""
    static = sum(rows * max(lengths[lo:lo + rows]) for lo in range(0, len(lengths), rows))
    free = [0] * min(rows, len(lengths))
    end = 0
    for n in lengths:
        start = heapq.heappop(free)
        end = max(end, start + n)
        heapq.heappush(free, start + n)
    return static / (rows * end), static, rows * end


def shipped(root=SHIPPED, reward: str = "reward") -> TQParams:
    load = lambda name: tqjax.load(os.path.join(root, name))   # noqa: E731
    return TQParams(sft=load("sft"), baseline=load("baseline-direct"), reward=load(reward))


def static_run(params, prompts, config, rows):
    out = []
    for lo in range(0, len(prompts), rows):
        out += tqjax.decode(params, prompts[lo:lo + rows], config,
                            indices=range(lo, min(lo + rows, len(prompts)))).tokens
    return out


def interleaved(fns, repeats: int):
    """Run each of ``fns`` once to warm up (compiling every program it uses), then ``repeats``
    rounds of all of them in turn; return each one's result and its fastest time. Interleaving puts
    every round of the compared runs under the same load."""
    results = [fn() for fn in fns]
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return results, best


def compare(params, prompts, config, rows, log=print, repeats: int = 2, name=None) -> dict:
    name = name or config.method
    log(f"{name} B={rows}: static and continuous, interleaved, {repeats} rounds")
    stats = {}

    def run():
        stats["s"] = Stats()
        return tqjax.decode(params, prompts, config, batch_size=rows, stats=stats["s"]).tokens

    (static, cont), (t_static, t_cont) = interleaved(
        [lambda: static_run(params, prompts, config, rows), run], repeats)
    s = stats["s"]
    lengths = [len(t) for t in static]
    tokens = sum(lengths)
    gain, static_rs, ideal_rs = ideal_gain(lengths, rows)
    return dict(method=name, rows=rows, same=static == cont, tokens=tokens,
                static_tok_s=tokens / t_static, cont_tok_s=tokens / t_cont,
                static_live=tokens / static_rs, cont_live=s.live_row_steps / s.row_steps,
                step_gain=static_rs / s.row_steps,
                ideal=gain, measured=t_static / t_cont, t_static=t_static, t_cont=t_cont,
                host_s=s.host_s, chunks=s.chunks, inserts=s.inserts)


def table(results) -> str:
    lines = ["| method | rows | tokens | static tok/s | continuous tok/s | live share static → continuous "
             "| ideal gain | row-step gain | measured gain | ratio | (gain−1) ratio | refill overhead | tokens |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        inc = (r["measured"] - 1) / (r["ideal"] - 1) if r["ideal"] > 1 else float("nan")
        lines.append(
            f"| {r['method']} | {r['rows']} | {r['tokens']} | {r['static_tok_s']:.1f} | {r['cont_tok_s']:.1f} "
            f"| {100 * r['static_live']:.0f} % → {100 * r['cont_live']:.0f} % | {r['ideal']:.2f}× "
            f"| {r['step_gain']:.2f}× "
            f"| {r['measured']:.2f}× | {r['measured'] / r['ideal']:.2f} | {inc:.2f} "
            f"| {r['host_s']:.2f} s of {r['t_cont']:.1f} s ({100 * r['host_s'] / r['t_cont']:.1f} %), "
            f"{r['chunks']} chunks, {r['inserts']} inserts | {'identical' if r['same'] else 'DIFFER'} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description="static batches vs continuous batching, shipped task")
    p.add_argument("--prompts", type=int, default=128)
    p.add_argument("--rows", type=int, nargs="+", default=[16, 64])
    p.add_argument("--methods", nargs="+", default=["tq", "sft"], choices=list(METHODS))
    p.add_argument("--repeats", type=int, default=2, help="timed rounds of each, interleaved")
    a = p.parse_args(argv)
    from tqjax.world import sample_prompts

    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    prompts = sample_prompts(a.prompts, seed=EVAL_SEED)
    print(f"# variable-length responses: {a.prompts} held-out prompts of the shipped task, shipped "
          f"models, EOS on, 48 new tokens — {os.cpu_count()} cores, jax {jax.__version__}, "
          f"{jax.devices()[0].platform}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    results = [compare(shipped(reward=READER.get(m, "reward")), prompts, METHODS[m], rows, log,
                       a.repeats, name=m)
               for m in a.methods for rows in a.rows]
    print(table(results))
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return results


if __name__ == "__main__":
    main()
