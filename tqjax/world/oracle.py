"""The gold reward as a reward *model*: plugs into the decoding engine through the model protocol.

With it, `tqjax.decode` runs TQ*, CD, ARGS and best-of-N against the exact target reward instead
of a learned reward model, which separates what the algorithm does from what the reward model
gets wrong. Its "cache" is just the token history: every call re-scores the whole sequence with
`gold_reward_jax` (cheap for the small task), so it makes no claim about speed.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from tqjax.models.cache import insert_rows
from tqjax.models.protocol import register_model

from tqjax.world.rewards import RewardTables, gold_reward_jax


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TokenCache:
    tokens_BS: jax.Array
    start_B: jax.Array
    prompt_B: jax.Array     # prompt tokens per row (the gold reward scores only what follows)
    length: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TokenSuffix:
    tokens_BU: jax.Array
    length: jax.Array


@register_model
@dataclasses.dataclass(frozen=True)
class GoldRewardModel:
    """``kind="reward"``: the score at each token is the gold reward of prompt + response so far."""

    tables: RewardTables
    vocab_size: int = dataclasses.field(metadata=dict(static=True))
    max_length: int = dataclasses.field(default=4096, metadata=dict(static=True))
    kind: str = dataclasses.field(default="reward", metadata=dict(static=True))
    tokenizer: object = dataclasses.field(default=None, compare=False)   # host-side, not in the tree
    eos_token_id: int | None = dataclasses.field(default=None, metadata=dict(static=True))

    @property
    def stop_token_ids(self) -> tuple[int, ...]:
        return () if self.eos_token_id is None else (self.eos_token_id,)

    def _score(self, tokens_BT, start_B, prompt_B, end):
        return gold_reward_jax(self.tables, tokens_BT, end - start_B, prompt_B, start_B)

    def init_cache(self, batch: int, length: int) -> TokenCache:
        zeros = jnp.zeros((batch,), jnp.int32)
        return TokenCache(jnp.zeros((batch, length), jnp.int32), zeros, zeros, jnp.zeros((), jnp.int32))

    def prefill(self, tokens_BT, start_B, cache):
        T = tokens_BT.shape[1]
        tokens = jax.lax.dynamic_update_slice(cache.tokens_BS, tokens_BT.astype(jnp.int32), (0, 0))
        start_B = start_B.astype(jnp.int32)
        cache = TokenCache(tokens, start_B, T - start_B, jnp.asarray(T, jnp.int32))
        return self._score(tokens, start_B, cache.prompt_B, T), cache

    def append(self, tokens_B, cache):
        tokens = _place(cache.tokens_BS, tokens_B[:, None], cache.length)
        cache = dataclasses.replace(cache, tokens_BS=tokens, length=cache.length + 1)
        return self._score(tokens, cache.start_B, cache.prompt_B, cache.length), cache

    def insert(self, cache, rows, slots_R):
        put = lambda old, new: old.at[slots_R].set(new, mode="drop")
        return TokenCache(put(cache.tokens_BS, rows.tokens_BS), put(cache.start_B, rows.start_B),
                          put(cache.prompt_B, rows.prompt_B),
                          insert_rows(cache.length, rows.length, cache.start_B.shape, slots_R))

    def init_suffix(self, cache, length: int) -> TokenSuffix:
        return TokenSuffix(jnp.zeros((cache.tokens_BS.shape[0], length), jnp.int32), jnp.zeros((), jnp.int32))

    def extend(self, tokens_B, cache, suffix):
        u = suffix.length
        own = jax.lax.dynamic_update_slice(suffix.tokens_BU, tokens_B[:, None].astype(jnp.int32), (0, u))
        room = jnp.concatenate([cache.tokens_BS, jnp.zeros_like(own)], axis=1)
        full = _place(room, own, cache.length)
        score = self._score(full, cache.start_B, cache.prompt_B, cache.length + u + 1)
        return score, TokenSuffix(own, u + 1)

    def forward_suffix(self, tokens_BU, cache):
        U = tokens_BU.shape[1]
        room = jnp.concatenate([cache.tokens_BS, jnp.zeros_like(tokens_BU, jnp.int32)], axis=1)
        full = _place(room, tokens_BU, cache.length)
        score_UB = jax.vmap(lambda u: self._score(full, cache.start_B, cache.prompt_B, cache.length + u + 1))(jnp.arange(U))
        return score_UB.T


def _place(tokens_BS, new_BU, at):
    """``tokens_BS`` with ``new_BU`` written from slot ``at`` on (shared, or ``[B]`` per row; a
    row whose slot is past the end is left as it is)."""
    new_BU = new_BU.astype(jnp.int32)
    if jnp.ndim(at) == 0:
        return jax.lax.dynamic_update_slice(tokens_BS, new_BU, (0, at))
    slots_BU = at[:, None] + jnp.arange(new_BU.shape[1])[None]
    rows_B1 = jnp.arange(tokens_BS.shape[0])[:, None]
    return tokens_BS.at[rows_B1, slots_BU].set(new_BU, mode="drop")


def gold_reward_model(tokenizer, spec=None) -> GoldRewardModel:
    """The target gold reward (or ``spec``) over ``tokenizer``'s vocabulary, as a reward model."""
    from tqjax.world.rewards import TARGET, reward_tables

    tables = reward_tables(spec or TARGET, tokenizer.get_vocab())
    return GoldRewardModel(tables=tables, vocab_size=len(tokenizer))
