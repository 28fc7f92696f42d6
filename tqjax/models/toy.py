"""An enumerable tabular toy that implements the decoding model protocol (docs/design.md, "The
model protocol").

The toy is a finite-state machine. Reading the real tokens of a sequence one by one moves a hash
state ``h ← (h·MULT + token + 1) mod P`` (``h = 0`` before the first token); the head at absolute
position ``p`` (0 = the first real token) reads row ``[p, h]`` of a table: next-token logits
``logits_PSV[p, h]`` for ``kind="lm"``, a score ``scores_PS[p, h]`` for ``kind="reward"``. The
output depends on the whole history, yet every quantity the engine estimates (top-k, Q under a
rollout policy, the tilted policy π·exp(r/β)) can be computed exactly by enumeration in NumPy with
`next_logits` / `score`, which is what the closed-form tests do.

The committed cache and a suffix are both just the state ``(h, position)`` per row, so the shared
prefix is trivially shared; the toy checks the engine's logic, not its memory layout.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp

from tqjax.models.cache import insert_rows
from tqjax.models.protocol import register_model
import numpy as np

MULT = 7


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ToyState:
    h_B: jax.Array        # int32 hash state per row
    pos_B: jax.Array      # int32 number of real tokens read per row
    length: jax.Array     # int32 slots written, shared or per row (cache only; suffixes carry 0)


@register_model
@dataclasses.dataclass(frozen=True)
class ToyModel:
    """Tabular model. ``table`` is ``[positions, P, V]`` (lm) or ``[positions, P]`` (reward)."""

    table: jax.Array
    kind: str = dataclasses.field(default="lm", metadata=dict(static=True))
    eos_token_id: int | None = dataclasses.field(default=None, metadata=dict(static=True))
    vocab: int = dataclasses.field(default=5, metadata=dict(static=True))
    tokenizer: object = dataclasses.field(default=None, compare=False)   # host-side, not in the tree

    @property
    def vocab_size(self) -> int:
        return self.vocab

    @property
    def max_length(self) -> int:
        return self.table.shape[0]

    @property
    def stop_token_ids(self) -> tuple[int, ...]:
        return () if self.eos_token_id is None else (self.eos_token_id,)

    @property
    def n_states(self) -> int:
        return self.table.shape[1]

    # -- protocol -----------------------------------------------------------------------------

    def _step(self, h_B, tokens_B):
        return (h_B * MULT + tokens_B + 1) % self.n_states

    def _read(self, h_B, pos_B):
        p_B = jnp.clip(pos_B - 1, 0, self.max_length - 1)
        return self.table[p_B, h_B].astype(jnp.float32)

    def init_cache(self, batch, length):
        zeros = jnp.zeros((batch,), jnp.int32)
        return ToyState(zeros, zeros, jnp.zeros((), jnp.int32))

    def prefill(self, tokens_BT, start_B, cache):
        T = tokens_BT.shape[1]

        def body(carry, i):
            h_B, pos_B = carry
            real_B = i >= start_B
            h_B = jnp.where(real_B, self._step(h_B, tokens_BT[:, i]), h_B)
            return (h_B, pos_B + real_B.astype(jnp.int32)), None

        (h_B, pos_B), _ = jax.lax.scan(body, (cache.h_B, cache.pos_B), jnp.arange(T))
        return self._read(h_B, pos_B), ToyState(h_B, pos_B, cache.length + T)

    def append(self, tokens_B, cache):
        h_B, pos_B = self._step(cache.h_B, tokens_B), cache.pos_B + 1
        return self._read(h_B, pos_B), ToyState(h_B, pos_B, cache.length + 1)

    def insert(self, cache, rows, slots_R):
        put = lambda old, new: old.at[slots_R].set(new, mode="drop")
        return ToyState(put(cache.h_B, rows.h_B), put(cache.pos_B, rows.pos_B),
                        insert_rows(cache.length, rows.length, cache.h_B.shape, slots_R))

    def init_suffix(self, cache, length):
        return ToyState(cache.h_B, cache.pos_B, jnp.zeros((), jnp.int32))

    def extend(self, tokens_B, cache, suffix):
        h_B, pos_B = self._step(suffix.h_B, tokens_B), suffix.pos_B + 1
        return self._read(h_B, pos_B), ToyState(h_B, pos_B, suffix.length + 1)

    def forward_suffix(self, tokens_BU, cache):
        def body(carry, tok_B):
            h_B, pos_B = self._step(carry[0], tok_B), carry[1] + 1
            return (h_B, pos_B), self._read(h_B, pos_B)

        _, out_U = jax.lax.scan(body, (cache.h_B, cache.pos_B), jnp.moveaxis(tokens_BU, 1, 0))
        return jnp.moveaxis(out_U, 0, 1)

    # -- enumeration helpers (NumPy, whole sequences) -----------------------------------------

    def state_of(self, seq) -> tuple[int, int]:
        h = 0
        for t in seq:
            h = (h * MULT + int(t) + 1) % self.n_states
        return h, len(seq)

    def next_logits(self, seq) -> np.ndarray:
        """``[V]`` float64 next-token logits after ``seq`` (lm)."""
        h, n = self.state_of(seq)
        return np.asarray(self.table, np.float64)[n - 1, h]

    def score(self, seq) -> float:
        """The score of the sequence ending at its last token (reward)."""
        h, n = self.state_of(seq)
        return float(np.asarray(self.table, np.float64)[n - 1, h])

    def log_probs(self, seq) -> np.ndarray:
        logits = self.next_logits(seq)
        return logits - np.logaddexp.reduce(logits)


def random_toy(key, kind="lm", vocab=5, n_states=31, positions=24, scale=1.5,
               eos_token_id=None) -> ToyModel:
    """Random tables; ``scale`` is the logit (or score) spread."""
    shape = (positions, n_states, vocab) if kind == "lm" else (positions, n_states)
    table = scale * jax.random.normal(key, shape, jnp.float32)
    return ToyModel(table, kind=kind, eos_token_id=eos_token_id, vocab=vocab)


def tilt(lm: ToyModel, reward: ToyModel, beta: float, end: int) -> ToyModel:
    """The autoregressive form of ρ(τ) ∝ π(τ)·exp(r/β) for sequences that end at position ``end``.

    ``r`` is ``reward``'s score at position ``end`` (the last token). Logits at positions
    ``p < end`` are ``log π(v|h) + W_{p+1}(h')`` with the soft value
    ``W_p(h) = logsumexp_v(log π(v|h) + W_{p+1}(h'))`` and ``W_end = r/β``; later positions copy π.
    Exact for any prompt, provided rollouts do not stop early (no EOS).
    """
    logits = np.asarray(lm.table, np.float64)
    scores = np.asarray(reward.table, np.float64)
    positions, n_states, vocab = logits.shape
    logp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    nxt_SV = (np.arange(n_states)[:, None] * MULT + np.arange(vocab)[None, :] + 1) % n_states
    out = logits.copy()
    w_S = scores[end] / beta
    for p in range(end - 1, -1, -1):
        tilted_SV = logp[p] + w_S[nxt_SV]
        out[p] = tilted_SV
        w_S = np.logaddexp.reduce(tilted_SV, axis=-1)
    return dataclasses.replace(lm, table=jnp.asarray(out, jnp.float32))


def sequences(vocab: int, length: int):
    """All token sequences of ``length`` over ``vocab`` (for enumeration)."""
    return itertools.product(range(vocab), repeat=length)
