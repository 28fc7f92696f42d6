"""A GGUF file's tokenizer (``tokenizer.*`` metadata) as a transformers ``PreTrainedTokenizerFast``.

Supported: ``tokenizer.ggml.model == "gpt2"``, byte-level BPE: the vocabulary and the merges as
the file lists them, its control tokens (type 3) as special tokens and its user-defined tokens
(type 4) as added tokens, both matched whole in the text. The text is split as llama.cpp splits
it for the file's ``tokenizer.ggml.pre``: ``gpt2`` with the GPT-2 pattern;
``smollm`` and the other pre-tokenizers llama.cpp treats the same way first cut every digit apart,
then the GPT-2 pattern; ``llama-bpe`` / ``llama3`` and ``qwen2`` with their own patterns. A
pre-tokenizer not listed here, or none (llama.cpp's "default", which no Hugging Face tokenizer
uses), is refused: guessing would give different ids.

BOS / EOS / UNK / PAD are the tokens named by ``tokenizer.ggml.*_token_id``; a BOS (EOS) is
added only when ``tokenizer.ggml.add_bos_token`` (``add_eos_token``) is true; the chat template
is ``tokenizer.chat_template``. A sentencepiece vocabulary (``tokenizer.ggml.model == "llama"``)
and every other tokenizer model are refused with a clear error.
"""

from __future__ import annotations

from tqjax.io.errors import UnsupportedModelError

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# tokenizer.ggml.pre -> (split digits one by one first, regex; None is ByteLevel's GPT-2 pattern)
PRE = {"gpt2": (False, None),
       "smollm": (True, None), "starcoder": (True, None), "refact": (True, None), "codeshell": (True, None),
       "command-r": (True, None), "exaone": (True, None),
       "llama-bpe": (False, _LLAMA3), "llama3": (False, _LLAMA3), "llama-v3": (False, _LLAMA3),
       "qwen2": (False, _QWEN2), "deepseek-r1-qwen": (False, _QWEN2)}


def tokenizer_from_gguf(meta: dict, path: str = ""):
    """A ``PreTrainedTokenizerFast`` from GGUF metadata; None when the file has no token list."""
    if "tokenizer.ggml.tokens" not in meta:
        return None
    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise UnsupportedModelError(f"{path}: tokenizer model {model!r} is not supported (tqjax builds byte-level "
                                    "BPE tokenizers, tokenizer.ggml.model 'gpt2'; sentencepiece 'llama' is not)")
    import transformers
    from tokenizers import AddedToken

    tokens = [str(t) for t in meta["tokenizer.ggml.tokens"]]
    types = [int(t) for t in meta.get("tokenizer.ggml.token_type", [NORMAL] * len(tokens))]
    backend = _byte_level_bpe(tokens, meta, path)
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t, k in zip(tokens, types) if k == CONTROL])
    backend.add_tokens([AddedToken(t, special=False, normalized=False)
                        for t, k in zip(tokens, types) if k == USER_DEFINED])
    special = {}
    for name, key in (("bos_token", "bos"), ("eos_token", "eos"), ("unk_token", "unknown"), ("pad_token", "padding")):
        index = meta.get(f"tokenizer.ggml.{key}_token_id")
        if index is not None:
            if not 0 <= int(index) < len(tokens):
                raise UnsupportedModelError(f"{path}: tokenizer.ggml.{key}_token_id {index} is not in the vocabulary")
            special[name] = tokens[int(index)]
    _post_process(backend, meta, special)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, chat_template=meta.get("tokenizer.chat_template"),
        clean_up_tokenization_spaces=False, model_input_names=["input_ids", "attention_mask"], **special)


def _byte_level_bpe(tokens: list[str], meta: dict, path: str):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    pre = meta.get("tokenizer.ggml.pre")
    if pre not in PRE:
        raise UnsupportedModelError(f"{path}: pre-tokenizer tokenizer.ggml.pre={pre!r} is not supported "
                                    f"(supported: {', '.join(sorted(PRE))})")
    vocab = {}
    for index, token in enumerate(tokens):
        vocab.setdefault(token, index)      # a repeated spelling keeps its first id, as llama.cpp's lookup does
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    digits, regex = PRE[pre]
    steps = [pre_tokenizers.Digits(individual_digits=True)] if digits else []
    if regex is None:
        steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True))
    else:
        steps += [pre_tokenizers.Split(Regex(regex), behavior="isolated"),
                  pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    backend.pre_tokenizer = pre_tokenizers.Sequence(steps)
    backend.decoder = decoders.ByteLevel()
    return backend


def _post_process(backend, meta: dict, special: dict) -> None:
    from tokenizers import processors

    bos = meta.get("tokenizer.ggml.add_bos_token", False) and "bos_token" in special
    eos = meta.get("tokenizer.ggml.add_eos_token", False) and "eos_token" in special
    if not (bos or eos):
        backend.post_processor = processors.ByteLevel(trim_offsets=False)
        return
    first = [special["bos_token"]] if bos else []
    last = [special["eos_token"]] if eos else []
    single = " ".join(first + ["$A"] + last)
    pair = " ".join(first + ["$A"] + last + first + ["$B:1"] + [t + ":1" for t in last])
    ids = {t: backend.token_to_id(t) for t in first + last}
    backend.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=list(ids.items()))
