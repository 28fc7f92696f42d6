"""Gold rewards of the embedded review task, in plain Python (on words) and in JAX (on token ids).

Both rewards are sums over the **response** words (special tokens are not words and score 0):

    r(x, y) = sum_{i in y} [ sign_i * sentiment(w_i) + bonus(w_i) + relevance(w_i, topic(x)) + length ]

- ``sentiment`` is a lexicon weight (strong/mild positive/negative adjectives, "loved", "hated",
  "recommend", ...). With ``negation`` on, a word right after "not" counts with the opposite sign
  (``sign_i = -1``); the word before the first response word is the prompt's last word.
- ``bonus`` is a per-word weight (exclamation marks, intensifiers).
- ``relevance``: an aspect noun of the prompt's topic gets ``on_topic``; an aspect noun of another
  domain only gets ``off_topic``. The topic is the domain of the first topic word (domain name or
  item word) in the prompt, or in the response when the prompt is empty; no topic word means no
  relevance term.
- ``length`` is added per response word (punctuation counts as a word).

``TARGET`` (the reward r to align to) values strong words, handles negation, rewards on-topic
aspects and charges a little per word. ``BASELINE`` (r_BL, the reward the baseline policy was
aligned to) shares the sentiment direction but weighs every sentiment word the same, ignores
negation ("not bad" is bad, "would not recommend" is good), ignores topic, likes exclamation marks
and intensifiers, and pays per word. Both are additive, so both are hackable: repeating "excellent"
raises r by 0.95 a word, "! ! !" raises r_BL by 0.43 a word.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tqjax.world import generator as g

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
NON_WORDS = ("<pad>", "<bos>", "<eos>")  # score nothing; an unknown word (<unk>) pays `length`
_WORD_RE = re.compile(r"<pad>|<bos>|<eos>|<unk>|\w+|[^\w\s]")


@dataclasses.dataclass(frozen=True)
class RewardSpec:
    """Weights of one gold reward (see the module docstring for the formula)."""

    strong_positive: float
    mild_positive: float
    strong_negative: float
    mild_negative: float
    negation: bool
    on_topic: float
    off_topic: float
    length: float
    bonus: tuple[tuple[str, float], ...] = ()

    def sentiment(self) -> dict[str, float]:
        """Word -> signed sentiment weight."""
        table: dict[str, float] = {}
        groups = (
            (g.STRONG_POSITIVE + ("loved", "recommend", "recommended"), self.strong_positive),
            (g.MILD_POSITIVE + tuple(w for d in g.DOMAINS for w in d.good) + ("liked", "enjoyed"),
             self.mild_positive),
            (g.STRONG_NEGATIVE + ("hated",), self.strong_negative),
            (g.MILD_NEGATIVE + tuple(w for d in g.DOMAINS for w in d.bad)
             + ("disliked", "waste", "avoid"), self.mild_negative),
        )
        for words, weight in groups:
            for w in words:
                if table.setdefault(w, weight) != weight:
                    raise ValueError(f"sentiment word {w!r} is in two groups")
        return table


TARGET = RewardSpec(strong_positive=1.0, mild_positive=0.5, strong_negative=-1.0,
                    mild_negative=-0.5, negation=True, on_topic=0.3, off_topic=-0.5,
                    length=-0.05, bonus=(("!", -0.1),))
BASELINE = RewardSpec(strong_positive=0.6, mild_positive=0.6, strong_negative=-0.6,
                      mild_negative=-0.6, negation=False, on_topic=0.0, off_topic=0.0,
                      length=0.03, bonus=(("!", 0.4),) + tuple((w, 0.2) for w in g.INTENSIFIERS))


def words(text: str | Sequence[str]) -> list[str]:
    """Split a text into the tokenizer's words (lowercased; punctuation and specials are words)."""
    if isinstance(text, str):
        return _WORD_RE.findall(text.lower())
    return [w.lower() for w in text]


def _topic(ws: Sequence[str]) -> int | None:
    topics = g.topic_words()
    return next((topics[w] for w in ws if w in topics), None)


def reward(spec: RewardSpec, prompt: str | Sequence[str], response: str | Sequence[str]) -> float:
    """Gold reward of ``response`` to ``prompt`` under ``spec`` (plain Python, float64)."""
    p, r = words(prompt), words(response)
    topic = _topic(p if p else r)
    sent, bonus, aspects = spec.sentiment(), dict(spec.bonus), g.aspect_domains()
    total = 0.0
    prev = p[-1] if p else None
    for w in r:
        if w not in NON_WORDS:
            flip = -1.0 if spec.negation and prev == "not" else 1.0
            total += flip * sent.get(w, 0.0) + bonus.get(w, 0.0) + spec.length
            if w in aspects and topic is not None:
                total += spec.on_topic if topic in aspects[w] else spec.off_topic
        prev = w
    return total


def target_reward(prompt: str | Sequence[str], response: str | Sequence[str]) -> float:
    """The target gold reward r(prompt, response) (``TARGET``)."""
    return reward(TARGET, prompt, response)


def baseline_reward(prompt: str | Sequence[str], response: str | Sequence[str]) -> float:
    """The baseline gold reward r_BL(prompt, response) (``BASELINE``)."""
    return reward(BASELINE, prompt, response)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RewardTables:
    """Lookup tables of one ``RewardSpec`` over a vocabulary of size V (D = domains + 1).

    ``word_V`` is per-word weight of a non-negated word (sentiment + bonus + length, 0 for special
    tokens); ``sentiment_V`` the part that negation flips; ``relevance_VD`` the aspect term for
    each topic (last column: no topic); ``domain_V`` the topic of a topic word, else D - 1.
    """

    word_V: jax.Array
    sentiment_V: jax.Array
    relevance_VD: jax.Array
    domain_V: jax.Array
    not_id: jax.Array
    negation: jax.Array


def reward_tables(spec: RewardSpec, vocab: Mapping[str, int]) -> RewardTables:
    """Build the JAX lookup tables of ``spec`` for a token -> id ``vocab`` (e.g. ``get_vocab()``)."""
    size = max(vocab.values()) + 1
    n_dom = len(g.DOMAINS)
    sent, bonus, aspects, topics = (spec.sentiment(), dict(spec.bonus), g.aspect_domains(),
                                    g.topic_words())
    word_V = np.zeros(size, np.float32)
    sentiment_V = np.zeros(size, np.float32)
    relevance_VD = np.zeros((size, n_dom + 1), np.float32)
    domain_V = np.full(size, n_dom, np.int32)
    for w, i in vocab.items():
        if w in NON_WORDS:
            continue
        sentiment_V[i] = sent.get(w, 0.0)
        word_V[i] = sent.get(w, 0.0) + bonus.get(w, 0.0) + spec.length
        if w in aspects:
            relevance_VD[i, :n_dom] = [spec.on_topic if d in aspects[w] else spec.off_topic
                                       for d in range(n_dom)]
        domain_V[i] = topics.get(w, n_dom)
    return RewardTables(jnp.asarray(word_V), jnp.asarray(sentiment_V), jnp.asarray(relevance_VD),
                        jnp.asarray(domain_V), jnp.asarray(vocab.get("not", -1), jnp.int32),
                        jnp.asarray(spec.negation, jnp.bool_))


@jax.jit
def gold_reward_jax(tables: RewardTables, tokens_BT: jax.Array, lengths_B: jax.Array,
                    prompt_lengths_B: jax.Array | None = None,
                    start_B: jax.Array | None = None) -> jax.Array:
    """Gold reward of each row, on token ids; equals ``reward`` on the decoded words.

    Row ``b`` holds its sequence in slots ``[start_B[b], start_B[b] + lengths_B[b])`` (``start_B``
    defaults to 0, i.e. right padding); the first ``prompt_lengths_B[b]`` of those tokens are the
    prompt (default 0: no prompt, the topic is read from the response). A leading ``<bos>`` is just
    part of the prompt. Returns float32 ``[B]``.
    """
    B, T = tokens_BT.shape
    zeros_B = jnp.zeros((B,), jnp.int32)
    start_B = zeros_B if start_B is None else start_B
    prompt_lengths_B = zeros_B if prompt_lengths_B is None else prompt_lengths_B
    pos_BT = jnp.arange(T)[None, :] - start_B[:, None]
    valid_BT = (pos_BT >= 0) & (pos_BT < lengths_B[:, None])
    prompt_BT = valid_BT & (pos_BT < prompt_lengths_B[:, None])
    response_BT = valid_BT & ~prompt_BT
    n_dom = tables.relevance_VD.shape[1] - 1
    dom_BT = tables.domain_V[tokens_BT]
    region_BT = jnp.where((prompt_lengths_B > 0)[:, None], prompt_BT, valid_BT)
    is_topic_BT = region_BT & (dom_BT < n_dom)
    first_B = jnp.argmax(is_topic_BT, axis=1)
    topic_B = jnp.where(is_topic_BT.any(axis=1),
                        jnp.take_along_axis(dom_BT, first_B[:, None], axis=1)[:, 0], n_dom)
    prev_BT = jnp.pad(tokens_BT[:, :-1], ((0, 0), (1, 0)), constant_values=-1)
    negated_BT = tables.negation & (prev_BT == tables.not_id) & (pos_BT > 0)
    sentiment_BT = tables.sentiment_V[tokens_BT]
    per_BT = (tables.word_V[tokens_BT] - 2.0 * jnp.where(negated_BT, sentiment_BT, 0.0)
              + tables.relevance_VD[tokens_BT, topic_B[:, None]])
    return jnp.sum(jnp.where(response_BT, per_BT, 0.0), axis=1).astype(jnp.float32)
