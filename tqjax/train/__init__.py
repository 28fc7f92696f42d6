"""Optax training of the task's models: SFT, Bradley–Terry reward models and DPO."""

from tqjax.train import data, dpo, reward_model, sft
from tqjax.train.loop import TrainConfig, TrainResult, batch_indices, evaluate, optimizer, train

__all__ = ["TrainConfig", "TrainResult", "batch_indices", "data", "dpo", "evaluate", "optimizer",
           "reward_model", "sft", "train"]
