"""`WorldRecipe`: the sizes, hyper-parameters and seeds of the embedded task's models
(`tqjax.train.world` builds them)."""

from __future__ import annotations

import dataclasses
import zlib

from tqjax import world
from tqjax.models import ModelConfig
from tqjax.train import data
from tqjax.train.loop import TrainConfig


@dataclasses.dataclass(frozen=True)
class WorldRecipe:
    """Sizes and hyper-parameters of the world models; ``steps_scale`` multiplies every run's steps."""

    seed: int = 0
    steps_scale: float = 1.0
    length: int = 64
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_dim: int = 384
    sft_texts: int = 30_000
    pairs: int = 6_000
    hack_fraction: float = 0.25
    contrast_fraction: float = 0.5
    contrast_labels: tuple[str, ...] = ("target",)
    val_texts: int = 1_000
    val_pairs: int = 1_000
    eval_prompts: int = 64
    beta: float = 0.1
    sft: TrainConfig = TrainConfig(steps=1000, batch_size=32, learning_rate=2e-3, warmup_steps=100,
                                   checkpoint_every=200)
    reward: TrainConfig = TrainConfig(steps=600, batch_size=32, learning_rate=1e-3, warmup_steps=60,
                                      checkpoint_every=200)
    reward_baseline: TrainConfig = TrainConfig(steps=300, batch_size=32, learning_rate=1e-3, warmup_steps=30,
                                               checkpoint_every=100)
    dpo: TrainConfig = TrainConfig(steps=250, batch_size=32, learning_rate=3e-4, warmup_steps=25,
                                   weight_decay=0.0, checkpoint_every=100)
    onpolicy_rounds: int = 1
    onpolicy_prompts: int = 64
    onpolicy_check_prompts: int = 32
    onpolicy_weight: int = 2
    onpolicy_max_new_tokens: int = 48
    reward_onpolicy: TrainConfig = TrainConfig(steps=300, batch_size=32, learning_rate=3e-4, warmup_steps=30,
                                               checkpoint_every=100)
    bpe_merges: int = 384
    bpe_texts: int = 2_000
    reader_length: int = 192
    reward_bpe: TrainConfig = TrainConfig(steps=180, batch_size=32, learning_rate=2e-3, warmup_steps=20,
                                          checkpoint_every=60)

    def seed_for(self, name: str) -> int:
        """A seed for one purpose (data set, init, batch order), derived from ``seed``."""
        return zlib.crc32(f"{self.seed}:{name}".encode())

    def run_config(self, name: str) -> TrainConfig:
        """The `TrainConfig` of run ``name`` ("sft", "reward", "reward_baseline", "dpo", "reward_onpolicy",
        "reward_bpe"), scaled and seeded.

        Both reward models draw their batch order from the seed of "reward".
        """
        base = getattr(self, name)
        name = "reward" if name == "reward_baseline" else name
        return base.replace(steps=max(1, round(base.steps * self.steps_scale)),
                            warmup_steps=max(1, round(base.warmup_steps * self.steps_scale)),
                            seed=self.seed_for(f"order:{name}"))

    def model_config(self, tokenizer) -> ModelConfig:
        """A small Llama-style language model over the task's vocabulary."""
        return ModelConfig.llama(vocab_size=len(tokenizer), d_model=self.d_model, n_layers=self.n_layers,
                                 n_heads=self.n_heads, mlp_dim=self.mlp_dim, max_positions=2 * self.length,
                                 bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=tokenizer.pad_token_id)

    def bpe_tokenizer(self):
        """The reader tokenizer of ``reward-bpe``: byte-level BPE with ``bpe_merges`` merges, trained
        on ``bpe_texts`` sampled reviews as a text reader reads them (`data.reader_texts`)."""
        texts = world.sample_texts(self.bpe_texts, self.seed_for("bpe:tokenizer"))
        reviews = data.reader_texts(world.world_tokenizer(), [""] * len(texts), texts)
        return world.train_bpe_tokenizer(reviews, self.bpe_merges, model_max_length=4 * self.length)
