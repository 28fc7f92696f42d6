"""The independent judge of the real task: logistic regression on hashed word uni- and bigrams.

It is trained on the full reviews (not the sentences r learns from) and shares nothing with r's
transformer, so text that fools r without being positive shows as a gap between the two.
A text is lower-cased and cut into words (letters and digits, with an inner apostrophe: "isn't");
each word and each pair of neighbouring words is hashed (CRC-32) into one of ``2**bits`` buckets;
a text's feature vector marks the buckets it holds, scaled to unit length. Weights are trained
with optax (Adam, full batch, L2 penalty) and saved as ``judge.npz`` + ``judge.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import zlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tqjax.sentiment.data import Example, detokenize

_WORDS = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
FILES = ("judge.npz", "judge.json")


def words(text: str) -> list[str]:
    """The lower-cased words of ``text`` (``"Isn't it GOOD?"`` → ``["isn't", "it", "good"]``)."""
    return _WORDS.findall(text.lower())


def features(texts: Sequence[str], bits: int) -> np.ndarray:
    """float32 ``[N, 2**bits]``: each text's hashed uni- and bigram buckets, unit L2 norm."""
    out = np.zeros((len(texts), 1 << bits), np.float32)
    mask = (1 << bits) - 1
    for i, text in enumerate(texts):
        w = words(text)
        grams = w + [f"{a} {b}" for a, b in zip(w, w[1:])]
        idx = sorted({zlib.crc32(g.encode()) & mask for g in grams})
        if idx:
            out[i, idx] = 1.0 / np.sqrt(len(idx))
    return out


def example_texts(examples: Sequence[Example]) -> list[str]:
    """Corpus examples as prose (`detokenize`), the form in which the judge reads text."""
    return [detokenize(e.text.split()) for e in examples]


@dataclasses.dataclass(frozen=True)
class Judge:
    """A trained judge: ``weights_F`` ``[2**bits]`` and ``bias``; `positive_prob` scores texts."""

    weights_F: np.ndarray
    bias: float
    bits: int
    meta: dict = dataclasses.field(default_factory=dict)

    def positive_prob(self, texts: list[str]) -> np.ndarray:
        """float64 ``[N]``: the probability that each text is positive."""
        logits = features(list(texts), self.bits).astype(np.float64) @ self.weights_F.astype(np.float64) + self.bias
        return 1.0 / (1.0 + np.exp(-logits))

    def accuracy(self, examples: Sequence[Example]) -> float:
        """The fraction of ``examples`` whose label is the side of 1/2 `positive_prob` falls on."""
        p = self.positive_prob(example_texts(examples))
        return float(np.mean((p > 0.5) == np.asarray([e.label for e in examples], bool)))

    def save(self, directory: str) -> None:
        """Write ``judge.npz`` (weights) and ``judge.json`` (bits, bias and ``meta``) into ``directory``."""
        os.makedirs(directory, exist_ok=True)
        np.savez(os.path.join(directory, FILES[0]), weights_F=self.weights_F)
        with open(os.path.join(directory, FILES[1]), "w") as f:
            json.dump({"bits": self.bits, "bias": self.bias, "meta": self.meta}, f, indent=2)

    @classmethod
    def load(cls, directory: str) -> "Judge":
        """The judge that `save` wrote into ``directory``; FileNotFoundError names a missing file."""
        for name in FILES:
            if not os.path.isfile(os.path.join(directory, name)):
                raise FileNotFoundError(f"{directory} holds no judge: {name} is missing "
                                        f"(train one with `tqjax sentiment train --stage judge`)")
        with open(os.path.join(directory, FILES[1])) as f:
            meta = json.load(f)
        with np.load(os.path.join(directory, FILES[0])) as z:
            weights_F = z["weights_F"]
        return cls(weights_F=weights_F, bias=float(meta["bias"]), bits=int(meta["bits"]), meta=meta["meta"])


def fit(texts: Sequence[str], labels: Sequence[int], bits: int = 16, l2: float = 1e-4, steps: int = 300,
        learning_rate: float = 0.05) -> Judge:
    """Logistic regression on `features` of ``texts`` (labels 1 / 0): ``steps`` full-batch Adam
    steps on the mean logistic loss plus ``l2 · |w|²``."""
    x_NF = jnp.asarray(features(texts, bits))
    y_N = jnp.asarray(labels, jnp.float32) * 2 - 1
    params = {"w_F": jnp.zeros((1 << bits,), jnp.float32), "b": jnp.zeros((), jnp.float32)}
    tx = optax.adam(learning_rate)

    def loss(p):
        logits = x_NF @ p["w_F"] + p["b"]
        return -jnp.mean(jax.nn.log_sigmoid(y_N * logits)) + l2 * jnp.sum(jnp.square(p["w_F"]))

    @jax.jit
    def step(p, s):
        g = jax.grad(loss)(p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    state = tx.init(params)
    for _ in range(steps):
        params, state = step(params, state)
    return Judge(weights_F=np.asarray(params["w_F"]), bias=float(params["b"]), bits=bits)
