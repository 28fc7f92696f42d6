"""PyTorch + transformers reference implementations of Transfer Q* decoding, for the benchmarks.

Written from the algorithm's description (docs/design.md, "Algorithm" and "The authors' released code"):

- `tq_authors_style`: one prompt at a time. The committed sequence is run through the SFT model
  with a KV cache to get the next-token logits. Each step the top-k candidates of π_sft are
  appended to the full prefix, and the k sequences are re-encoded from scratch and continued
  greedily by the baseline model with ``generate(max_new_tokens=H)``. All k full sequences
  ``[prefix, z, τ]`` are scored by the reward model (read where transformers reads it) and the token with
  the largest ``log π_sft(z) + α·r`` is committed. It runs the whole budget (``ignore_eos``).
- `tq_batched`: the "best effort" PyTorch variant. All prompts at once; every model keeps a KV
  cache of the committed sequences; each step the baseline's and the reward model's committed
  caches are copied k times (one copy per candidate) and only ``z`` and the ``H`` rollout tokens
  are run through them.

Both use ids, not text (no decode/re-tokenise round trip: the models share one vocabulary).
Also here: `random_hf_model`, the random Hugging Face models the benchmarks load into both stacks.
"""

from __future__ import annotations

import copy
import warnings

import torch
import transformers

warnings.filterwarnings("ignore", message=".*past_key_values.*deprecated")
warnings.filterwarnings("ignore", message=".*deprecated.*Use `cache` instead")

LLAMA = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
             intermediate_size=1024, vocab_size=1024, max_position_embeddings=2048)
NEOX = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=8, intermediate_size=1024,
            vocab_size=1024, max_position_embeddings=2048, rotary_pct=0.25)
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=64, vocab_size=61, max_position_embeddings=256)
PAD, EOS = 0, 2
TOKENS = dict(pad_token_id=PAD, bos_token_id=1, eos_token_id=EOS)


def random_hf_model(arch: str = "llama", kind: str = "lm", seed: int = 0, size: str = "bench"):
    """A random float32 HF model: ``arch`` "llama" or "neox", ``kind`` "lm" or "reward",
    ``size`` "bench" (d=256, 4 layers, 8 heads, vocab 1024) or "tiny" (d=32, vocab 61)."""
    torch.manual_seed(seed)
    if arch == "llama":
        shape = LLAMA if size == "bench" else TINY
        config = transformers.LlamaConfig(**shape, **TOKENS)
    elif arch == "neox":
        shape = NEOX if size == "bench" else {k: v for k, v in TINY.items() if k != "num_key_value_heads"}
        config = transformers.GPTNeoXConfig(**shape, **TOKENS)
    else:
        raise ValueError(f"unknown arch {arch!r}")
    if kind == "reward":
        config.num_labels = 1
        model = transformers.AutoModelForSequenceClassification.from_config(config)
    else:
        model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():   # larger than HF's default init, so that greedy choices are not near-ties
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.float().eval()


def reward_scores(reward_model, **inputs):
    """Score-head output at every position, float32 ``[B, T]``, and the backbone's cache.

    ``*ForSequenceClassification.forward`` pools to one score per row (at the last non-PAD token),
    so the backbone and the score head are run separately here."""
    out = reward_model.base_model(**inputs)
    return reward_model.score(out.last_hidden_state)[..., 0].float(), getattr(out, "past_key_values", None)


def _score_last(reward_model, ids_BT: torch.Tensor, first: int, eos) -> torch.Tensor:
    """Rewards ``[B]`` of ``[prefix, z, τ]`` rows whose suffix ``z, τ`` starts at column ``first``
    and ends at its first EOS (included; ``z = EOS`` ends it at once, whatever ``generate`` appended
    after it) or at the last column; the rest is padding. Read as the reward model's own forward
    reads the unpadded sequence (the model is causal): at its rightmost token that is not
    ``config.pad_token_id``."""
    scores_BT = reward_scores(reward_model, input_ids=ids_BT)[0]
    T = ids_BT.shape[1]
    last_B = torch.full((ids_BT.shape[0],), T - 1)
    if eos is not None:
        is_eos_BT = ids_BT[:, first:] == eos
        hit_B = is_eos_BT.any(-1)
        last_B = torch.where(hit_B, first + is_eos_BT.int().argmax(-1), last_B)
    pad = reward_model.config.pad_token_id
    if pad is not None:     # transformers: argmax(index · (ids != pad)) over the sequence
        col_T = torch.arange(T)
        real_BT = (ids_BT != pad) & (col_T[None] <= last_B[:, None])
        last_B = (col_T[None] * real_BT).argmax(-1)
    return scores_BT[torch.arange(ids_BT.shape[0]), last_B]


@torch.inference_mode()
def tq_authors_style(sft, baseline, reward, prompts, k=10, alpha=1.0, horizon=20, max_new_tokens=32):
    """TQ* the way the released code runs it: one prompt at a time, prefix re-encoded per candidate.

    prompts: list of token-id lists. Rollouts end at EOS (the reward is read there), committed
    sequences do not (``ignore_eos``). Returns the generated ids per prompt.
    """
    eos = sft.config.eos_token_id
    outputs = []
    for prompt in prompts:
        ids = torch.tensor([prompt], dtype=torch.long)
        out = sft(input_ids=ids, use_cache=True)
        logits_V, past = out.logits[0, -1].float(), out.past_key_values
        generated = []
        for step in range(max_new_tokens):
            logp_V = torch.log_softmax(logits_V, -1)
            logp_C, z_C = torch.topk(logp_V, k)
            cand_CT = torch.cat([ids.expand(k, -1), z_C[:, None]], dim=1)
            full_CT = cand_CT
            if horizon > 0:
                full_CT = baseline.generate(input_ids=cand_CT, attention_mask=torch.ones_like(cand_CT),
                                            max_new_tokens=horizon, do_sample=False, num_beams=1,
                                            pad_token_id=PAD, eos_token_id=eos)
            r_C = _score_last(reward, full_CT, cand_CT.shape[1] - 1, eos)
            choice = int(torch.argmax(logp_C + alpha * r_C))
            token = z_C[choice].view(1, 1)
            generated.append(int(token))
            ids = torch.cat([ids, token], dim=1)
            if step + 1 < max_new_tokens:
                out = sft(input_ids=token, past_key_values=past, use_cache=True)
                logits_V, past = out.logits[0, -1].float(), out.past_key_values
        outputs.append(generated)
    return outputs


def _repeat_cache(cache, k: int):
    """A copy of a committed cache with every row repeated ``k`` times (row-major: b*k + c)."""
    cache = copy.deepcopy(cache)
    cache.batch_repeat_interleave(k)
    return cache


@torch.inference_mode()
def tq_batched(sft, baseline, reward, prompts, k=10, alpha=1.0, horizon=20, max_new_tokens=32):
    """TQ* batched over prompts, with each candidate's prefix cache copied from the committed one.

    Prompts are left-padded (attention mask, explicit positions); all of them run together.
    Rollouts end at EOS as in `tq_authors_style`. Returns the generated ids per prompt.
    """
    eos = sft.config.eos_token_id
    B, T = len(prompts), max(len(p) for p in prompts)
    ids_BT = torch.zeros((B, T), dtype=torch.long)
    mask_BT = torch.zeros((B, T), dtype=torch.long)
    for b, p in enumerate(prompts):
        ids_BT[b, T - len(p):] = torch.tensor(p)
        mask_BT[b, T - len(p):] = 1

    def run(model, ids, mask, past):
        """(last-position logits ``[B, V]`` or reward ``[B]``, cache) of ``ids`` after ``past``."""
        pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
        kw = dict(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=past, use_cache=True)
        if model is reward:
            scores, past = reward_scores(model, **kw)
            return scores[:, -1], past
        out = model(**kw)
        return out.logits[:, -1].float(), out.past_key_values

    caches, heads = {}, {}
    for name, model in (("sft", sft), ("baseline", baseline), ("reward", reward)):
        heads[name], caches[name] = run(model, ids_BT, mask_BT, None)
    # the reward as transformers reads it: a token equal to the pad id keeps the reading before it
    # (prompts hold no pad id, so the prompt's reading is its last token's score)
    pad = reward.config.pad_token_id
    keeps = (lambda tok: tok == pad) if pad is not None else (lambda tok: torch.zeros_like(tok, dtype=torch.bool))
    read_B = heads["reward"]
    generated = torch.zeros((B, max_new_tokens), dtype=torch.long)
    for step in range(max_new_tokens):
        logp_C, z_BC = torch.topk(torch.log_softmax(heads["sft"], -1), k)
        bl, rm = _repeat_cache(caches["baseline"], k), _repeat_cache(caches["reward"], k)
        mask = mask_BT.repeat_interleave(k, 0)
        tok = z_BC.reshape(B * k, 1)
        done_R = torch.zeros(B * k, dtype=torch.bool)
        r_R = read_B.repeat_interleave(k, 0)
        for h in range(horizon + 1):
            mask = torch.cat([mask, torch.ones_like(tok)], 1)
            r_R = torch.where(done_R | keeps(tok[:, 0]), r_R, run(reward, tok, mask, rm)[0])
            if h < horizon:
                nxt = run(baseline, tok, mask, bl)[0].argmax(-1, keepdim=True)
                if eos is not None:
                    done_R = done_R | (tok[:, 0] == eos)
                tok = torch.where(done_R[:, None], PAD, nxt)
        choice_B = torch.argmax(logp_C + alpha * r_R.view(B, k), -1)
        token_B1 = torch.gather(z_BC, 1, choice_B[:, None])
        generated[:, step] = token_B1[:, 0]
        mask_BT = torch.cat([mask_BT, torch.ones_like(token_B1)], 1)
        if step + 1 < max_new_tokens:
            for name, model in (("sft", sft), ("baseline", baseline), ("reward", reward)):
                heads[name], caches[name] = run(model, token_B1, mask_BT, caches[name])
            read_B = torch.where(keeps(token_B1[:, 0]), read_B, heads["reward"])
    return generated.tolist()


@torch.inference_mode()
def tq_authors_text(sft, baseline, reward, sft_tokenizer, reward_tokenizer, prompts, k=10,
                    alpha=1.0, horizon=20, max_new_tokens=32):
    """`tq_authors_style` with a reward model that has its own tokenizer, as the released code
    scores: every rollout ``[prefix, z, τ]`` (up to its first EOS) is decoded to text with the SFT
    tokenizer (``skip_special_tokens=True``), re-encoded with the reward model's (one batched call
    for the k rollouts of a step), right-padded with its pad id and scored by its own forward
    (``*ForSequenceClassification`` reads the rightmost non-pad token)."""
    eos = sft.config.eos_token_id
    pad = reward.config.pad_token_id
    outputs = []
    for prompt in prompts:
        ids = torch.tensor([prompt], dtype=torch.long)
        out = sft(input_ids=ids, use_cache=True)
        logits_V, past = out.logits[0, -1].float(), out.past_key_values
        generated = []
        for step in range(max_new_tokens):
            logp_C, z_C = torch.topk(torch.log_softmax(logits_V, -1), k)
            cand_CT = torch.cat([ids.expand(k, -1), z_C[:, None]], dim=1)
            full_CT = baseline.generate(input_ids=cand_CT, attention_mask=torch.ones_like(cand_CT),
                                        max_new_tokens=horizon, do_sample=False, num_beams=1,
                                        pad_token_id=PAD, eos_token_id=eos) if horizon else cand_CT
            first = cand_CT.shape[1] - 1
            seqs = []
            for row in full_CT.tolist():
                tail = row[first:]
                if eos is not None and eos in tail:
                    tail = tail[:tail.index(eos) + 1]
                seqs.append(row[:first] + tail)
            texts = sft_tokenizer.batch_decode(seqs, skip_special_tokens=True)
            enc = reward_tokenizer(texts)["input_ids"]
            T = max(len(x) for x in enc)
            rm_ids = torch.full((k, T), pad if pad is not None else 0, dtype=torch.long)
            for c, x in enumerate(enc):
                rm_ids[c, :len(x)] = torch.tensor(x)
            r_C = reward(input_ids=rm_ids).logits[:, 0].float()
            choice = int(torch.argmax(logp_C + alpha * r_C))
            token = z_C[choice].view(1, 1)
            generated.append(int(token))
            ids = torch.cat([ids, token], dim=1)
            if step + 1 < max_new_tokens:
                out = sft(input_ids=token, past_key_values=past, use_cache=True)
                logits_V, past = out.logits[0, -1].float(), out.past_key_values
        outputs.append(generated)
    return outputs
