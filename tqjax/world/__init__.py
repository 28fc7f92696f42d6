"""The embedded review task: seeded generator, gold rewards (Python and JAX) and tokenizer."""

from tqjax.world.generator import (
    DOMAINS,
    EVAL_PROMPT_SEED,
    Example,
    Pair,
    make_pairs,
    sample_examples,
    sample_prompts,
    sample_texts,
    vocabulary,
)
from tqjax.world.rewards import (
    BASELINE,
    SPECIAL_TOKENS,
    TARGET,
    RewardSpec,
    RewardTables,
    baseline_reward,
    gold_reward_jax,
    reward,
    reward_tables,
    target_reward,
    words,
)
from tqjax.world.tokenizer import train_bpe_tokenizer, train_tokenizer, world_tokenizer

__all__ = [
    "BASELINE", "DOMAINS", "EVAL_PROMPT_SEED", "SPECIAL_TOKENS", "TARGET", "Example", "Pair", "RewardSpec",
    "RewardTables", "baseline_reward", "gold_reward_jax", "make_pairs", "reward", "reward_tables",
    "sample_examples", "sample_prompts", "sample_texts", "target_reward", "train_bpe_tokenizer", "train_tokenizer",
    "vocabulary", "words", "world_tokenizer",
]
