"""Decoders (GPT-2, Llama/Mistral/Qwen2, GPT-NeoX) with a KV cache and a reward head."""

from tqjax.models.cache import KVCache, Suffix
from tqjax.models.config import ModelConfig
from tqjax.models.model import Model, init_model
from tqjax.models.transformer import param_shapes

__all__ = ["KVCache", "Model", "ModelConfig", "Suffix", "init_model", "param_shapes"]
