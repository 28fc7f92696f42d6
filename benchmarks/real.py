"""Speed on the real SmolLM2-135M-Instruct (issue 23): tqjax against PyTorch, side by side, one run.

The model is the cached tqjax checkpoint of the real task (``tqjax sentiment setup`` makes it:
30 layers, d=576, vocab 49,152). SFT = baseline = that model; the reward model is the same
backbone with a scalar head (`tqjax.train.reward_model.from_lm`, a fixed seed): its numbers are
arbitrary, its cost is a real reward model's. The torch side is a ``transformers``
``LlamaForCausalLM`` and ``LlamaForSequenceClassification`` holding the same float32 weights
(`to_torch`), so that tokens can be checked identical. Parts (``--parts``):

- ``tq``: TQ* (k=10, H=20, greedy rollouts, α=1, greedy selection, 16 new tokens, ``ignore_eos``)
  on 4 review prefixes (~10 tokens) and 4 chat prompts (72-82 tokens; ``--prompt-sets chat-long``:
  the same requests after a system message, 119-129 tokens): tqjax's compiled program
  against the authors'-style loop (`reference_torch.tq_authors_style`), tokens asserted equal,
  tokens/s and tqjax's necessary FLOPs (`throughput.necessary_flops`) over the float32 matmul peak
  measured in the same run (`throughput.matmul_peak`);
- ``plain``: greedy decoding, batch 1 and 8, 64 new tokens, against ``generate()`` with its KV
  cache at 1 and 2 torch threads (the faster is compared), tokens asserted equal;
- ``bon``: best-of-16 sampling (temperature 1) with the reward pass, against
  ``generate(num_return_sequences=16)`` plus one reward forward (sampled: speed only);
- ``compile``: lowering + compiling the TQ* program at 2 and 30 layers (no compilation cache);
- ``reuse``: for the committed tokens of ``tq``, how often the committed token's greedy rollout's
  first token is among the next step's top-k candidates (then that candidate's rollout is known
  but for one token). With baseline = SFT it is always the top-1 candidate; ``--baseline`` takes
  another checkpoint (e.g. the trained DPO baseline) to measure it for real.

    .venv/bin/python benchmarks/real.py                          # everything (~15 min, quiet 2 cores)
    .venv/bin/python benchmarks/real.py --parts tq --authors-prompts 1
    .venv/bin/python benchmarks/real.py --layers 4 --new-tokens 4 --horizon 4   # a smaller run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tqjax  # noqa: E402
from real_models import (CHECKPOINT, PROMPT_SETS, best_threads, cut, flops_of, load_real, prompts,  # noqa: E402
                         to_torch)
from reference_torch import tq_authors_style  # noqa: E402
from throughput import Setting, TqjaxRunner, first_difference, matmul_peak  # noqa: E402
from tqjax.api.decode import TQParams  # noqa: E402
from tqjax.decoding import DecodeConfig  # noqa: E402

# -- parts -------------------------------------------------------------------------------------------

def part_tq(models, hf, a, peak, log):
    sft, bl, rm = models
    params = TQParams(sft=sft, baseline=bl, reward=rm)
    rows, committed = [], {}
    for kind in a.prompt_sets:
        ps = prompts(sft.tokenizer, kind, a.prompts)
        s = Setting(prompts=len(ps), k=a.k, horizon=a.horizon, new_tokens=a.new_tokens)
        runner = TqjaxRunner(params, ps, s)           # compiled ahead of time: no warm-up call
        times, tokens = [], None
        for _ in range(a.tq_reps):
            t = time.perf_counter()
            tokens = runner()
            times.append(time.perf_counter() - t)
        sec = statistics.median(times)
        tok_s = len(ps) * a.new_tokens / sec
        rate = flops_of(params, ps, s) / sec
        log(f"  tq {kind}: tqjax {tok_s:.2f} tok/s ({sec:.1f} s), compile {runner.compile_s:.1f} s")
        n = min(a.authors_prompts, len(ps))
        torch.set_num_threads(a.authors_threads)
        t = time.perf_counter()
        ref = tq_authors_style(hf["sft"], hf["baseline"], hf["reward"], ps[:n], k=a.k, alpha=1.0,
                               horizon=a.horizon, max_new_tokens=a.new_tokens)
        ref_s = n * a.new_tokens / (time.perf_counter() - t)
        diff = first_difference(ref, tokens[:n])
        log(f"  tq {kind}: authors {ref_s:.3f} tok/s, tokens {'agree' if diff is None else 'DIFFER ' + diff}")
        committed[kind] = (ps, tokens)
        rows.append(dict(kind=kind, lengths=[len(p) for p in ps], tok_s=tok_s, ref_s=ref_s, n_ref=n,
                         share=rate / peak, gflops=rate / 1e9, compile_s=runner.compile_s,
                         mib=runner.compiled_mib, diff=diff, text=sft.tokenizer.decode(tokens[0])))
    print(f"\n### TQ* (k={a.k}, H={a.horizon}, M=1, greedy rollouts, {a.new_tokens} new tokens, ignore_eos; "
          f"authors' loop at {a.authors_threads} torch thread(s))\n")
    print("| prompts | lengths | tqjax tok/s | authors'-style tok/s (prompts run) | ratio | tqjax GFLOP/s | "
          "share of matmul peak | compile s | compiled MiB | tokens |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        ratio = f"{r['tok_s'] / r['ref_s']:.1f}x" if r["diff"] is None else "n/a"
        print(f"| {r['kind']} | {min(r['lengths'])}–{max(r['lengths'])} | {r['tok_s']:.2f} | {r['ref_s']:.3f} "
              f"({r['n_ref']}) | **{ratio}** | {r['gflops']:.1f} | **{100 * r['share']:.1f} %** | "
              f"{r['compile_s']:.1f} | {r['mib']:.0f} | {'same' if r['diff'] is None else 'DIFFER ' + r['diff']} |")
    for r in rows:
        print(f"- first {r['kind']} response: {r['text']!r}")
    assert all(r["diff"] is None for r in rows), "tokens differ from the authors'-style loop"
    return committed


def _hf_batch(ps):
    T = max(len(p) for p in ps)
    ids = torch.full((len(ps), T), 0, dtype=torch.long)
    mask = torch.zeros((len(ps), T), dtype=torch.long)
    for b, p in enumerate(ps):
        ids[b, T - len(p):], mask[b, T - len(p):] = torch.tensor(p), 1
    return ids, mask


def part_plain(models, hf, a, log):
    sft = models[0]
    params = TQParams(sft=sft)
    config = DecodeConfig(method="sft", temperature=0.0, max_new_tokens=a.plain_tokens, ignore_eos=True)
    base = prompts(sft.tokenizer, "chat", 4) + prompts(sft.tokenizer, "review", 4)
    print(f"\n### Plain greedy decoding, {a.plain_tokens} new tokens (ignore_eos), median of {a.reps}\n")
    print("| batch | prompt lengths | tqjax tok/s | generate() 1 thread | generate() 2 threads | tqjax / best | "
          "compile s | tokens |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    for batch in a.plain_batches:
        ps = (base * batch)[:batch]
        runner = TqjaxRunner(params, ps, Setting(prompts=batch, new_tokens=a.plain_tokens), config)
        ids, mask = _hf_batch(ps)
        gen = lambda: hf["sft"].generate(input_ids=ids, attention_mask=mask, max_new_tokens=a.plain_tokens,  # noqa: E731
                                         min_new_tokens=0, do_sample=False, eos_token_id=None,
                                         pad_token_id=0)[:, ids.shape[1]:].tolist()
        runner()
        ours, theirs = {"jax": []}, {1: [], 2: []}
        with torch.inference_mode():
            for _ in range(a.reps):
                t = time.perf_counter()
                tokens = runner()
                ours["jax"].append(time.perf_counter() - t)
                for threads in (1, 2):
                    torch.set_num_threads(threads)
                    t = time.perf_counter()
                    ref = gen()
                    theirs[threads].append(time.perf_counter() - t)
        n = batch * a.plain_tokens
        j = n / statistics.median(ours["jax"])
        h = {k: n / statistics.median(v) for k, v in theirs.items()}
        diff = first_difference(ref, tokens)
        log(f"  plain batch {batch}: tqjax {j:.1f}, torch {h}")
        print(f"| {batch} | {min(map(len, ps))}–{max(map(len, ps))} | {j:.1f} | {h[1]:.1f} | {h[2]:.1f} | "
              f"**{j / max(h.values()):.2f}x** | {runner.compile_s:.1f} | "
              f"{'same' if diff is None else 'DIFFER ' + diff} |", flush=True)


def part_bon(models, hf, a, log):
    sft, _, rm = models
    n, new = a.bon_n, a.plain_tokens
    params = TQParams(sft=sft, reward=rm)
    config = DecodeConfig(method="bon", n=n, temperature=1.0, max_new_tokens=new, ignore_eos=True)
    ps = prompts(sft.tokenizer, "review", a.prompts)
    runner = TqjaxRunner(params, ps, Setting(prompts=len(ps), new_tokens=new), config)
    ids, mask = _hf_batch(ps)

    def theirs():
        seqs = hf["sft"].generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, do_sample=True,
                                  temperature=1.0, top_k=0, top_p=1.0, num_return_sequences=n,
                                  eos_token_id=None, pad_token_id=0)
        m = torch.cat([mask.repeat_interleave(n, 0), torch.ones_like(seqs[:, ids.shape[1]:])], 1)
        r = hf["reward"](input_ids=seqs, attention_mask=m).logits[:, 0].view(len(ps), n)
        return seqs.view(len(ps), n, -1)[torch.arange(len(ps)), r.argmax(-1)]

    runner()
    ours, mine = [], {1: [], 2: []}
    with torch.inference_mode():
        for _ in range(a.reps):
            t = time.perf_counter()
            runner()
            ours.append(time.perf_counter() - t)
            for threads in (1, 2):
                torch.set_num_threads(threads)
                t = time.perf_counter()
                theirs()
                mine[threads].append(time.perf_counter() - t)
    tok = len(ps) * new
    j, h = tok / statistics.median(ours), {k: tok / statistics.median(v) for k, v in mine.items()}
    log(f"  bon: tqjax {j:.1f}, torch {h}")
    print(f"\n### Best-of-{n} sampling (temperature 1, {new} new tokens, ignore_eos, reward pass included), "
          f"{len(ps)} review prompts, kept tokens per second, median of {a.reps}\n")
    print("| tqjax tok/s | generate(num_return_sequences) + reward, 1 thread | 2 threads | tqjax / best |")
    print("|---:|---:|---:|---:|")
    print(f"| {j:.2f} | {h[1]:.2f} | {h[2]:.2f} | **{j / max(h.values()):.2f}x** |")
    print(f"(sampled tokens are not compared: the two stacks draw with different generators; "
          f"counted: {len(ps)} prompts x {new} kept tokens)")


def part_compile(models, a, log):
    jax.config.update("jax_enable_compilation_cache", False)
    sft, bl, rm = models
    ps = prompts(sft.tokenizer, "review", a.prompts)
    s = Setting(prompts=len(ps), k=a.k, horizon=a.horizon, new_tokens=a.new_tokens)
    rows = []
    for L in a.compile_layers:
        params = TQParams(sft=cut(sft, L), baseline=cut(bl, L), reward=cut(rm, L))
        runner = TqjaxRunner(params, ps, s)
        jax.clear_caches()                             # lower and compile again, from nothing
        t = time.perf_counter()
        lowered = tqjax.decoding.engine.decode_arrays.lower(*runner.args, plan=runner.plan)
        t1 = time.perf_counter()
        lowered.compile()
        rows.append((L, t1 - t, time.perf_counter() - t1))
        log(f"  compile {L} layers: {rows[-1]}")
    print("\n### Compile time of the TQ* program (lower + compile, no compilation cache)\n")
    print("| layers | lower s | compile s | total s | total / first |")
    print("|---:|---:|---:|---:|---:|")
    for L, lo, co in rows:
        print(f"| {L} | {lo:.2f} | {co:.2f} | {lo + co:.2f} | **{(lo + co) / sum(rows[0][1:]):.2f}x** |")


def part_reuse(models, committed, a, log):
    sft, bl, _ = models
    hits = top1 = follows = total = 0
    for kind, (ps, tokens) in committed.items():
        for p, toks in zip(ps, tokens):
            seqs = [p + toks[:t + 1] for t in range(len(toks) - 1)]     # s_{t+1} = [s_t, z_t]
            T = max(map(len, seqs))
            batch = np.array([s + [0] * (T - len(s)) for s in seqs])
            last = np.array([len(s) - 1 for s in seqs])
            rows = np.arange(len(seqs))
            tau1 = np.asarray(tqjax.logits(bl, batch))[rows, last].argmax(-1)
            sft_logits = np.asarray(tqjax.logits(sft, batch))[rows, last]
            topk = np.argsort(-sft_logits, -1)[:, :a.k]
            hits += int((topk == tau1[:, None]).any(-1).sum())
            top1 += int((topk[:, 0] == tau1).sum())
            follows += int((np.array(toks[1:]) == tau1).sum())
            total += len(seqs)
        log(f"  reuse {kind}: {hits}/{total}")
    print("\n### Greedy-rollout reuse (the committed token's rollout, one step later)\n")
    print(f"- steps: {total}; the rollout's first token is among the next step's top-{a.k} candidates: "
          f"**{hits}/{total} = {100 * hits / total:.0f} %** (the top-1 candidate: {100 * top1 / total:.0f} %; "
          f"the next committed token: {100 * follows / total:.0f} %)")
    if bl is sft:
        print("- baseline = SFT here, so the first rollout token is the next step's argmax by construction; "
              "pass --baseline with the trained baseline to measure the real task's rate")
    print(f"- saving if built: that candidate's rollout needs 1 new baseline token instead of {a.horizon}, "
          f"i.e. at most {100 * (a.horizon - 1) / (a.k * a.horizon):.1f} % of the rollout model's tokens "
          f"(the reward model still reads the whole shifted rollout)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=CHECKPOINT)
    p.add_argument("--baseline", default=None, help="another checkpoint as the baseline (default: the SFT model)")
    p.add_argument("--parts", nargs="+", default=["tq", "plain", "bon", "compile", "reuse"],
                   choices=["tq", "plain", "bon", "compile", "reuse"])
    p.add_argument("--layers", type=int, default=None, help="cut the model to its first LAYERS layers")
    p.add_argument("--prompt-sets", nargs="+", default=["review", "chat"], choices=PROMPT_SETS)
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--horizon", type=int, default=20)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--authors-prompts", type=int, default=1, help="prompts given to the authors' loop")
    p.add_argument("--authors-threads", type=int, default=0, help="torch threads for it (0: the faster now)")
    p.add_argument("--plain-batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--plain-tokens", type=int, default=64)
    p.add_argument("--bon-n", type=int, default=16)
    p.add_argument("--compile-layers", type=int, nargs="+", default=[2, 30])
    p.add_argument("--reps", type=int, default=3, help="timed runs of each side, plain and best-of-N parts")
    p.add_argument("--tq-reps", type=int, default=1, help="timed runs of tqjax's TQ* program (median)")
    a = p.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    models = load_real(a.checkpoint, a.layers, a.baseline)
    lm, rm = to_torch(models[0], models[2])
    hf = dict(sft=lm, baseline=lm if models[1] is models[0] else to_torch(models[1]), reward=rm)
    c = models[0].config
    ids = prompts(models[0].tokenizer, "chat", 1)
    probe = None
    with torch.inference_mode():
        delta = float(np.abs(np.asarray(tqjax.logits(models[0], np.array(ids)))
                             - lm(torch.tensor(ids)).logits.numpy()).max())
        if not a.authors_threads:
            batch = torch.tensor([ids[0]] * a.k)
            a.authors_threads, probe = best_threads(lambda: lm(batch))
    peak = max(matmul_peak() for _ in range(2))
    print(f"# Real model: SmolLM2-135M-Instruct ({c.n_layers} layers, d={c.d_model}, vocab {c.vocab_size}), float32")
    print(f"- {os.cpu_count()} cores, load average {'/'.join(f'{x:.1f}' for x in os.getloadavg())} at the start; "
          f"jax {jax.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"- matmul peak (jnp.dot 2048² float32): {peak / 1e9:.1f} GFLOP/s; torch max |Δ logits| vs tqjax "
          f"{delta:.1e}; torch threads for the TQ* loop: {a.authors_threads} (probe {probe})")
    sys.stdout.flush()
    committed = part_tq(models, hf, a, peak, log) if "tq" in a.parts or "reuse" in a.parts else {}
    if "plain" in a.parts:
        part_plain(models, hf, a, log)
    if "bon" in a.parts:
        part_bon(models, hf, a, log)
    if "compile" in a.parts:
        part_compile(models, a, log)
    if "reuse" in a.parts:
        part_reuse(models, committed, a, log)
    print(f"\nload average at the end: {'/'.join(f'{x:.1f}' for x in os.getloadavg())}; matmul peak re-measured: "
          f"{matmul_peak() / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
