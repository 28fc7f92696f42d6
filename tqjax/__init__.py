"""tqjax: Transfer Q* decoding-time alignment in JAX (the whole public API)."""

from tqjax.api.models import load, logits, reward, save
from tqjax.io import CheckpointError, UnsupportedModelError
from tqjax.models import Model, ModelConfig, init_model

__all__ = ["CheckpointError", "Model", "ModelConfig", "UnsupportedModelError", "init_model", "load",
           "logits", "reward", "save"]
