"""A word-level tokenizer for the review task, trained with ``tokenizers``, used via transformers.

Every word (lowercased; each punctuation character is a word of its own) is one token. Special
tokens have fixed ids: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3. Encoding a text with
``add_special_tokens=True`` (the default) prepends ``<bos>``; nothing appends ``<eos>``
automatically, but generated responses end with the literal ``<eos>``, which encodes to id 2.
Decoding joins tokens with single spaces, so ``decode(encode(text))`` gives back any generated
text.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import tokenizers
import transformers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from tqjax.world import generator
from tqjax.world.rewards import SPECIAL_TOKENS

PAD, BOS, EOS, UNK = SPECIAL_TOKENS


def _strip_specials(text: str) -> str:
    for name in SPECIAL_TOKENS:
        text = text.replace(name, " ")
    return text


def train_tokenizer(texts: Iterable[str], save_dir: str | os.PathLike | None = None,
                    model_max_length: int = 128) -> transformers.PreTrainedTokenizerFast:
    """Train a WordLevel tokenizer on ``texts``; with ``save_dir``, save it there.

    Every word seen in ``texts`` (special tokens in them are skipped) gets an id (more frequent words get smaller ids, after the four
    special tokens). The saved folder holds ``tokenizer.json`` and ``tokenizer_config.json`` and
    loads offline with ``transformers.AutoTokenizer.from_pretrained(save_dir)``.
    """
    tok = tokenizers.Tokenizer(models.WordLevel(unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")])
    trainer = trainers.WordLevelTrainer(vocab_size=1_000_000, min_frequency=0,
                                        special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    _train(tok, texts, trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B:1", special_tokens=[(BOS, bos_id)])
    return _fast(tok, model_max_length, save_dir)


def _train(tok, texts: Iterable[str], trainer) -> None:
    """Train ``tok`` on ``texts`` (special-token strings stripped); the specials must get ids 0–3."""
    tok.train_from_iterator([_strip_specials(t) for t in texts], trainer=trainer)
    for i, name in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(name) != i:
            raise ValueError(f"special token {name} got id {tok.token_to_id(name)}, expected {i}")


def _fast(tok, model_max_length: int, save_dir) -> transformers.PreTrainedTokenizerFast:
    """``tok`` as a transformers fast tokenizer with the task's special tokens; saved to
    ``save_dir`` when given."""
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        model_max_length=model_max_length, padding_side="right", clean_up_tokenization_spaces=False)
    if save_dir is not None:
        fast.save_pretrained(os.fspath(save_dir))
    return fast


def world_tokenizer(save_dir: str | os.PathLike | None = None, n_texts: int = 2000,
                    seed: int = 0) -> transformers.PreTrainedTokenizerFast:
    """The task's tokenizer: trained on ``n_texts`` sampled reviews plus the full vocabulary.

    Including ``generator.vocabulary()`` guarantees that every word the generator can emit has
    its own token, whatever the sample. Deterministic for given arguments.
    """
    texts = generator.sample_texts(n_texts, seed) + [" ".join(generator.vocabulary())]
    return train_tokenizer(texts, save_dir)


def train_bpe_tokenizer(texts: Iterable[str], merges: int, save_dir: str | os.PathLike | None = None,
                        model_max_length: int = 256) -> transformers.PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts``: the four special tokens (ids 0–3, as in
    `train_tokenizer`), the 256 bytes and ``merges`` merges; with ``save_dir``, saved there.

    It reads any text (every byte has a token, so ``<unk>`` is never produced). Encoding with
    ``add_special_tokens=True`` (the default) gives ``<bos> text <eos>``: a reward model with this
    tokenizer reads its score at the closing ``<eos>``, the rightmost token that is not
    ``<pad>``. Deterministic for given arguments. Saved as ``tokenizer.json`` and
    ``tokenizer_config.json``, loaded offline by ``transformers.AutoTokenizer.from_pretrained``.
    """
    if merges < 0:
        raise ValueError(f"merges must be >= 0, got {merges}")
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=len(SPECIAL_TOKENS) + 256 + merges, min_frequency=2,
                                  special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    _train(tok, texts, trainer)
    bos_id, eos_id = tok.token_to_id(BOS), tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} $B:1 {EOS}:1",
        special_tokens=[(BOS, bos_id), (EOS, eos_id)])
    return _fast(tok, model_max_length, save_dir)
