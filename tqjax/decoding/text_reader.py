"""What a reader with its own tokenizer reads: the text round trip (README, "Reward models with
their own tokenizer").

A reader (``reward``, ``baseline_reward``) whose tokenizer differs from the SFT model's reads text,
never SFT ids. For prompt ``i`` and a response (SFT ids: committed tokens, then a candidate and its
rollout):

- plain prompts (a string or token ids): ``text = sft_tokenizer.decode(prompt_ids + response,
  skip_special_tokens=True)`` and the reader reads ``reader_tokenizer(text)["input_ids"]`` (its own
  special tokens added as its tokenizer adds them by default);
- chat prompts, when the reader's tokenizer has a chat template: ``reader_tokenizer.
  apply_chat_template(messages + [{"role": "assistant", "content": sft_tokenizer.decode(response,
  skip_special_tokens=True)}], tokenize=True)``; without a template, as a plain prompt (the SFT
  template's rendering decoded).

A reader with the SFT tokenizer and template reads the ids themselves (`TextCodec` with
``identity=True``): the same ids as the fused path. `layout` turns a batch of reader encodings into
the arrays the scoring program reads: per row the longest prefix that every encoding of the row
shares, token for token (so reusing it is exact by construction, whatever the tokenizer does at the
seam), and per encoding the rest, both bucketed (`bucket`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tqjax.io.chat import has_chat_template, is_messages

MIN_BUCKET = 8


def bucket(n: int) -> int:
    """The slots ``n`` reader ids are padded to: the next power of two or 1.5× one (8, 12, 16,
    24, 32, 48, ...), at least `MIN_BUCKET`: padding stays under a third, and a decode compiles
    the scoring program for only the few buckets its lengths pass through."""
    n = max(int(n), MIN_BUCKET)
    p = 1 << (n - 1).bit_length()
    return p * 3 // 4 if n <= p * 3 // 4 else p


def same_tokenizer(a, b) -> bool:
    """Whether two tokenizers turn every text into the same ids and render chats the same way:
    the same serialised fast tokenizer (vocabulary, merges, normaliser, pre-tokeniser, special
    tokens, post-processor), else the same vocabulary; and the same chat template."""
    if a is b:
        return True
    if getattr(a, "chat_template", None) != getattr(b, "chat_template", None):
        return False
    ba, bb = getattr(a, "backend_tokenizer", None), getattr(b, "backend_tokenizer", None)
    if ba is not None and bb is not None:
        return ba.to_str() == bb.to_str()
    va, vb = getattr(a, "get_vocab", None), getattr(b, "get_vocab", None)
    return va is not None and vb is not None and type(a) is type(b) and va() == vb()


def reads_text(sft, model, role: str) -> bool:
    """Whether reader ``role`` (``model``) reads text rather than the SFT model's ids: a tokenizer
    that differs from the SFT model's, or a vocabulary of another size. Raises ValueError for a
    reader that would need the round trip but cannot make it (no tokenizer on either side);
    `tqjax.decoding.decode_plan.plan_for` asks this of every given reader."""
    sft_tok = getattr(sft, "tokenizer", None)
    tok = getattr(model, "tokenizer", None)
    same_vocab = int(model.vocab_size) == int(sft.vocab_size)
    if tok is None or sft_tok is None:
        if same_vocab:
            return False            # ids shared: the fused path
        if tok is None:
            raise ValueError(
                f"TQParams.{role}'s vocabulary ({int(model.vocab_size)}) differs from the SFT "
                f"model's ({int(sft.vocab_size)}) and it has no tokenizer: a reader with its "
                f"own vocabulary reads text, so it needs its tokenizer")
        raise ValueError(
            f"TQParams.{role} has its own tokenizer (vocabulary {int(model.vocab_size)}, the "
            f"SFT model's {int(sft.vocab_size)}) but the SFT model has no tokenizer to turn "
            f"responses into text")
    if same_vocab and same_tokenizer(sft_tok, tok):
        return False
    for name in ("decode", "__call__"):
        if not callable(getattr(sft_tok if name == "decode" else tok, name, None)):
            who = "the SFT model's tokenizer" if name == "decode" else f"TQParams.{role}'s tokenizer"
            raise TypeError(f"{who} ({type(sft_tok if name == 'decode' else tok).__name__}) "
                            f"cannot {'decode ids' if name == 'decode' else 'encode text'}; "
                            f"the text round trip needs a transformers tokenizer")
    return True


class ReaderContextError(ValueError):
    """Prompt ``prompt``'s text, as reader ``role`` reads it, is ``length`` of its tokens: longer
    than its context of ``context`` positions. ``prompt`` is the prompt's position in the list the
    caller passed; ``detail`` is the message without the prompt's name."""

    def __init__(self, prompt: int, role: str, length: int, context: int):
        self.prompt, self.role, self.length, self.context = int(prompt), role, int(length), int(context)
        super().__init__(f"prompt {self.prompt}: {self.detail}")

    @property
    def detail(self) -> str:
        return (f"the text TQParams.{self.role} reads is {self.length} of its tokens, longer than "
                f"its context of {self.context} positions")

    def at(self, prompt: int) -> "ReaderContextError":
        """The same error, naming the prompt ``prompt`` (its position in an outer list)."""
        return ReaderContextError(prompt, self.role, self.length, self.context)

    def __reduce__(self):
        return ReaderContextError, (self.prompt, self.role, self.length, self.context)


class TextCodec:
    """The reader's ids of (prompt ``i``, response) pairs, by the contract above, in one batched
    call of each tokenizer."""

    def __init__(self, role: str, sft_tokenizer, reader_tokenizer, prompts, prompt_ids,
                 max_length: int, identity: bool = False):
        self.role, self.sft, self.reader = role, sft_tokenizer, reader_tokenizer
        self.prompt_ids = [list(map(int, ids)) for ids in prompt_ids]
        self.max_length, self.identity = int(max_length), identity
        chat = not identity and has_chat_template(reader_tokenizer)
        self.messages = [list(p) if chat and is_messages(p) else None for p in prompts]

    def encode(self, rows, responses) -> list[list[int]]:
        """Reader ids for each (prompt index, response ids) pair."""
        rows = list(rows)
        if self.identity:
            return [self.prompt_ids[i] + list(r) for i, r in zip(rows, responses)]
        seqs = [list(r) if self.messages[i] is not None else self.prompt_ids[i] + list(r)
                for i, r in zip(rows, responses)]
        try:
            texts = self.sft.batch_decode(seqs, skip_special_tokens=True)
        except Exception as e:      # noqa: BLE001 — any tokenizer failure, named
            raise ValueError(f"the SFT tokenizer could not decode a response of prompt "
                             f"{rows[0] if rows else '?'} for TQParams.{self.role}: "
                             f"{type(e).__name__}: {e}") from e
        out: list = [None] * len(rows)
        plain = [j for j, i in enumerate(rows) if self.messages[i] is None]
        chats = [j for j, i in enumerate(rows) if self.messages[i] is not None]
        if plain:
            enc = self.reader([texts[j] for j in plain])
            ids = enc["input_ids"] if isinstance(enc, Mapping) else enc
            for j, x in zip(plain, ids):
                out[j] = list(x)
        if chats:
            convs = [self.messages[rows[j]] + [{"role": "assistant", "content": texts[j]}]
                     for j in chats]
            enc = self.reader.apply_chat_template(convs, tokenize=True)
            ids = enc["input_ids"] if isinstance(enc, Mapping) else enc
            for j, x in zip(chats, ids):
                out[j] = list(x)
        return out

    def check(self, rows, encodings) -> None:
        """`ReaderContextError` naming the first prompt whose reader text exceeds the reader's
        context; ValueError for a text the reader's tokenizer made no tokens of."""
        for i, ids in zip(rows, encodings):
            if len(ids) > self.max_length:
                raise ReaderContextError(i, self.role, len(ids), self.max_length)
            if not ids:
                raise ValueError(f"prompt {i}: TQParams.{self.role}'s tokenizer made no tokens "
                                 f"of the text")


def shared_prefix(encodings, groups: int) -> np.ndarray:
    """Per row (``groups`` rows of ``R`` consecutive encodings): the length of the longest run of
    leading ids all the row's encodings share, less one where needed so that every encoding keeps
    at least one id after it."""
    R = len(encodings) // groups
    shared = np.zeros(groups, np.int64)
    for b in range(groups):
        rows = encodings[b * R:(b + 1) * R]
        n = min(len(x) for x in rows) - 1
        first = rows[0]
        p = 0
        while p < n and all(x[p] == first[p] for x in rows[1:]):
            p += 1
        shared[b] = p
    return shared


def prefix_arrays(prefixes, at_least: int = 0):
    """``prefix_BP`` (int32, each row's ids left-padded to a bucket of at least ``at_least``
    slots) and ``start_B``."""
    P = max(bucket(max(max(len(x) for x in prefixes), 1)), at_least)
    prefix_BP = np.zeros((len(prefixes), P), np.int32)
    start_B = np.full((len(prefixes),), P, np.int32)
    for b, ids in enumerate(prefixes):
        if len(ids):
            prefix_BP[b, P - len(ids):] = ids
        start_B[b] = P - len(ids)
    return prefix_BP, start_B


def suffix_arrays(encodings, groups: int, keep, at_least: int = 0):
    """``suffix_RBU`` (int32, encoding ``b * R + r`` without its row's first ``keep[b]`` ids,
    right-padded to a bucket of at least ``at_least`` slots) and ``last_RB`` (the index of its
    last id)."""
    R = len(encodings) // groups
    rests = [x[int(keep[j // R]):] or [0] for j, x in enumerate(encodings)]
    U = max(bucket(max(len(x) for x in rests)), at_least)
    suffix_RBU = np.zeros((R, groups, U), np.int32)
    last_RB = np.zeros((R, groups), np.int32)
    for j, rest in enumerate(rests):
        b, r = divmod(j, R)
        suffix_RBU[r, b, :len(rest)] = rest
        last_RB[r, b] = len(rest) - 1
    return suffix_RBU, last_RB


def layout(encodings, groups: int):
    """Arrays for scoring ``groups`` rows of ``len(encodings) // groups`` encodings each (row-major:
    encoding ``b * R + r`` is row ``b``'s ``r``-th): ``prefix_BP``, ``start_B`` (the row's
    `shared_prefix`, `prefix_arrays`), ``suffix_RBU``, ``last_RB`` (the rest, `suffix_arrays`)
    and the shared lengths ``[B]``."""
    R = len(encodings) // groups
    shared = shared_prefix(encodings, groups)
    prefix_BP, start_B = prefix_arrays([encodings[b * R][:shared[b]] for b in range(groups)])
    return (prefix_BP, start_B) + suffix_arrays(encodings, groups, shared) + (shared,)


def check_reader_context(params, prompts, prompt_ids, plan) -> None:
    """Before any decoding: `ReaderContextError` naming the first prompt whose text (with an empty
    response) is already longer than a text reader's context."""
    sft_tok = getattr(params.sft, "tokenizer", None)
    P = len(prompt_ids)
    for role in plan.text_readers:
        model = getattr(params, role)
        codec = TextCodec(role, sft_tok, model.tokenizer, list(prompts), prompt_ids,
                          model.max_length)
        codec.check(range(P), codec.encode(range(P), [[] for _ in range(P)]))
