"""TQ* with a reward model that has its own tokenizer, side by side in one run:

- ``fused``: `tqjax.decode` with a reward model on the SFT tokenizer (one compiled program);
- ``cross``: `tqjax.decode` with a reward model on its own tokenizer (the text round trip,
  `tqjax.decoding.cross`: two compiled programs per step, batched host re-tokenisation);
- ``torch-authors-text``: `reference_torch.tq_authors_text`, the released code's loop (one prompt
  at a time, prefix re-encoded per candidate, every rollout decoded, re-encoded and scored).

Random Llama-style models (d=256, 4 layers, vocab 1024 for the SFT/baseline/fused reward) saved
with ``save_pretrained`` and loaded into both stacks. Two byte-level BPE tokenizers trained
offline on one synthetic corpus: the SFT one to 1024 ids, the reward model's to 700 ids with a
BOS of its own, so words split differently. Prompts: random SFT ids (the plain-prompt contract:
``text = decode(prompt + response)``). TQ* k=10, H=20 greedy rollouts, α=1, greedy, 32 new
tokens, ``ignore_eos``.

    python benchmarks/cross_tokenizer.py            # headline: 16 prompts of 128 ids
    python benchmarks/cross_tokenizer.py --quick    # B=4, T=32, k=4, H=5, 8 tokens
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import decoders, models, pre_tokenizers, processors, trainers  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tqjax  # noqa: E402
from reference_torch import LLAMA, TOKENS, random_hf_model, tq_authors_text  # noqa: E402
from tqjax.api.decode import TQParams  # noqa: E402
from tqjax.decoding import DecodeConfig  # noqa: E402


def corpus(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    words = ["".join(rng.choice(letters, rng.integers(2, 9))) for _ in range(3000)]
    p = 1.0 / np.arange(1, len(words) + 1)
    return [" ".join(rng.choice(words, 12, p=p / p.sum())) for _ in range(n)]


def bpe(vocab_size, bos):
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus(), trainer=trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                           special_tokens=[("<s>", 1)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>",
                                                eos_token="</s>", pad_token="<pad>")


def build(rm_vocab=700):
    sft_tok, rm_tok = bpe(LLAMA["vocab_size"], False), bpe(rm_vocab, True)
    assert len(sft_tok) == LLAMA["vocab_size"], len(sft_tok)
    torch.manual_seed(3)
    config = transformers.LlamaConfig(**{**LLAMA, "vocab_size": len(rm_tok)}, **TOKENS, num_labels=1)
    rm_cross = transformers.AutoModelForSequenceClassification.from_config(config)
    with torch.no_grad():
        for p in rm_cross.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf = dict(sft=random_hf_model("llama", "lm", 0), baseline=random_hf_model("llama", "lm", 1),
              reward=random_hf_model("llama", "reward", 2), reward_cross=rm_cross.float().eval())
    loaded = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, m in hf.items():
            m.save_pretrained(os.path.join(tmp, name), safe_serialization=True)
            loaded[name] = tqjax.load(os.path.join(tmp, name))
    tok = dict(sft=sft_tok, baseline=sft_tok, reward=sft_tok, reward_cross=rm_tok)
    loaded = {n: m.replace(tokenizer=tok[n]) for n, m in loaded.items()}
    return hf, loaded, sft_tok, rm_tok


def timed(fn, reps):
    times, out = [], None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, float(np.median(times))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--authors-prompts", type=int, default=1)
    ap.add_argument("--torch-threads", type=int, default=1)
    a = ap.parse_args(argv)
    B, T, k, H, N = (4, 32, 4, 5, 8) if a.quick else (16, 128, 10, 20, 32)
    torch.set_num_threads(a.torch_threads)
    hf, m, sft_tok, rm_tok = build()
    rng = np.random.default_rng(0)
    prompts = rng.integers(3, LLAMA["vocab_size"], (B, T)).tolist()
    cfg = DecodeConfig(method="tq", k=k, horizon=H, rollouts=1, rollout_temperature=0.0,
                       max_new_tokens=N, ignore_eos=True)
    fused = TQParams(m["sft"], m["baseline"], m["reward"])
    cross = TQParams(m["sft"], m["baseline"], m["reward_cross"])
    print(f"setting: B={B} T={T} k={k} H={H} N={N}; reward tokenizer {len(rm_tok)} ids vs SFT "
          f"{len(sft_tok)}; torch threads {a.torch_threads}")
    results = {}
    for name, params in (("fused", fused), ("cross", cross)):
        t = time.perf_counter()
        tqjax.decode(params, prompts, cfg)                     # compile (and warm)
        warm = time.perf_counter() - t
        out, sec = timed(lambda: tqjax.decode(params, prompts, cfg), a.reps)
        results[name] = (out, sec, warm)
        print(f"{name}: {B * N / sec:.2f} tokens/s ({sec:.1f} s; first call {warm:.1f} s)")
    P = a.authors_prompts
    ref, sec = timed(lambda: tq_authors_text(hf["sft"], hf["baseline"], hf["reward_cross"], sft_tok,
                                             rm_tok, prompts[:P], k=k, horizon=H, max_new_tokens=N), 1)
    results["authors"] = (ref, sec, 0.0)
    print(f"torch-authors-text ({P} prompt): {P * N / sec:.2f} tokens/s ({sec:.1f} s)")
    same = results["cross"][0].tokens[:P] == ref
    print(f"cross tokens == authors' tokens on the first {P} prompt(s): {same}")
    rate = {n: (B if n != "authors" else P) * N / s for n, (_, s, _) in results.items()}
    cost = results["cross"][0].diagnostics["cross_seconds"]
    print("\n| implementation | tokens/s | cross / this |\n|---|---:|---:|")
    for n in ("fused", "cross", "authors"):
        print(f"| {n} | {rate[n]:.2f} | {rate['cross'] / rate[n]:.2f}x |")
    total = sum(cost.values())
    print("\ncross path, seconds per decode by phase (one timed run):")
    for n, s in cost.items():
        print(f"  {n:13s} {s:7.2f} s  {100 * s / total:5.1f} %")
    print(f"  reader tokens scored: {results['cross'][0].diagnostics['reader_tokens']}, "
          f"buckets: {results['cross'][0].diagnostics['reader_buckets']}")
    print(f"cross over fused: {results['cross'][1] - results['fused'][1]:.1f} s per decode")


if __name__ == "__main__":
    main()
