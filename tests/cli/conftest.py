"""Tiny random stand-ins for the shipped world checkpoints (same tokenizer, same folder names)."""

import jax
import pytest

import tqjax
from tqjax.models import ModelConfig, init_model
from tqjax.world import world_tokenizer

ROLES = {"sft": "lm", "baseline-direct": "lm", "baseline-indirect": "lm", "reward": "reward", "reward-baseline": "reward"}


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    tokenizer = world_tokenizer(n_texts=200)
    for i, (name, kind) in enumerate(ROLES.items()):
        cfg = ModelConfig.tiny("llama", kind=kind, vocab_size=len(tokenizer), eos_token_id=2, pad_token_id=0)
        tqjax.save(init_model(cfg, jax.random.key(i), tokenizer=tokenizer), root / name)
    return root
