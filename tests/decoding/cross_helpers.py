"""Two offline byte-level BPE tokenizers over overlapping vocabularies (trained to different sizes,
so that words split differently), random tiny models of two architectures reading them, and a
slow reference whose readers do the text round trip literally."""

from __future__ import annotations

import jax
import numpy as np
import tokenizers
import transformers
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

from tests.decoding import decode_reference as ref
from tests.decoding.decode_helpers import spread
from tqjax.api.decode import TQParams
from tqjax.models import ModelConfig, init_model

CORPUS = ["the food was great and the service was quick", "how are you today",
          "tell me about the sushi bar in two sentences", "write a short review of the pizza place",
          "i am fine thank you and you", "the pizza was cold but the staff were kind"] * 4
SPLIT_WORD = "pizza"        # one word the two tokenizers split differently (checked in a test)
# With `cross_params` and test_cross's TQ config, prompts in this order (keys 0, 1, 2) and a reward
# model context of OVERFLOW_CONTEXT: every prompt fits alone, and only the rollouts of prompt 1
# outgrow the context (its reader text reaches 31 ids, the others' 19 and 21; found by decoding
# each alone with a large context).
OVERFLOW = ["how are you", "tell me about the sushi", "i am fine"]
OVERFLOW_CONTEXT = 24


def bpe(vocab_size: int, bos: bool, chat_template: str | None = None):
    """A byte-level BPE `PreTrainedTokenizerFast` with <pad>=0, <s>=1, </s>=2; ``bos``: plain
    encoding prepends <s> (a reward model's own special tokens)."""
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A $B:1", special_tokens=[("<s>", 1)])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>",
                                                eos_token="</s>", pad_token="<pad>")
    fast.chat_template = chat_template
    return fast


RM_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}"
               "{% endfor %}")


def tokenizers_pair():
    """(SFT tokenizer: BPE to 300 ids, RM tokenizer: BPE to 275 ids with a BOS and a template)."""
    return bpe(300, bos=False), bpe(275, bos=True, chat_template=RM_TEMPLATE)


def cross_params(seed=0):
    """(TQParams: llama SFT/baseline on the SFT tokenizer, a GPT-NeoX reward model on the RM
    tokenizer; a GPT-NeoX baseline reward model on the RM tokenizer)."""
    sft_tok, rm_tok = tokenizers_pair()
    ks = jax.random.split(jax.random.key(seed), 8)
    lm = dict(vocab_size=len(sft_tok), eos_token_id=2, pad_token_id=0)
    rm = dict(kind="reward", vocab_size=len(rm_tok), eos_token_id=2, pad_token_id=0)
    sft = spread(init_model(ModelConfig.tiny("llama", **lm), ks[0], tokenizer=sft_tok), ks[4])
    bl = spread(init_model(ModelConfig.tiny("llama", **lm), ks[1], tokenizer=sft_tok), ks[5])
    r = spread(init_model(ModelConfig.tiny("neox", **rm), ks[2], tokenizer=rm_tok), ks[6])
    rbl = spread(init_model(ModelConfig.tiny("neox", **rm), ks[3], tokenizer=rm_tok), ks[7])
    return TQParams(sft, bl, r), rbl


class TextFns(ref.Fns):
    """`decode_reference.Fns` whose readers do the round trip literally: decode the whole
    sequence with the SFT tokenizer, re-encode it with the reader's, run the reader's full
    forward and read the score at the rightmost non-pad id. ``messages``: per prompt, the chat
    messages (then the response alone is decoded into the assistant turn)."""

    def __init__(self, params, messages=None, pad_to=64):
        super().__init__(params, pad_to)     # one compiled forward per model, not one per length
        self.messages, self.prompt_len, self.index = messages, 0, 0

    def score(self, role, seq):
        model = getattr(self.params, role)
        sft_tok, tok = self.params.sft.tokenizer, model.tokenizer
        if self.messages is None:
            ids = tok(sft_tok.decode(seq, skip_special_tokens=True))["input_ids"]
        else:
            content = sft_tok.decode(seq[self.prompt_len:], skip_special_tokens=True)
            conv = self.messages[self.index] + [{"role": "assistant", "content": content}]
            ids = tok.apply_chat_template(conv, tokenize=True)
            ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        self.calls += 1
        tokens = np.zeros((1, max(self.pad_to, len(ids))), np.int32)
        tokens[0, :len(ids)] = ids          # causal: the padding after them changes nothing
        raw = np.asarray(ref._forward(model, tokens)[0], np.float64)
        pad = model.config.pad_token_id
        real = [i for i, t in enumerate(ids) if t != pad]
        return float(raw[real[-1] if real else 0])


def reference(params, prompt_ids, cfg, messages=None):
    """Per-prompt reference dicts (`decode_reference.decode` with `TextFns`)."""
    fns = TextFns(params, messages)
    eos = ref.stop_set(params, cfg)
    stats = dict(eos_rollouts=0, fallbacks=0, nonfinite=0)
    out = []
    for i, prompt in enumerate(prompt_ids):
        fns.prompt_len, fns.index = len(prompt), i
        key = jax.random.fold_in(jax.random.key(cfg.seed), i)
        if cfg.method in ("tq", "cd", "args"):
            out.append(ref.tq(fns, list(prompt), cfg, key, eos, stats))
        elif cfg.method == "bon":
            role = "baseline" if cfg.proposal == "baseline" else "sft"
            samples = [ref.plain(fns, prompt, cfg, jax.random.fold_in(key, j), eos, role)
                       for j in range(cfg.n)]
            rewards = np.array([s["reward"] for s in samples])
            out.append(samples[int(np.argmax(np.where(np.isfinite(rewards), rewards, -np.inf)))])
        else:
            out.append(ref.plain(fns, prompt, cfg, key, eos, cfg.method))
    return out
