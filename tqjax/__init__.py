"""tqjax: Transfer Q* decoding-time alignment in JAX (the whole public API)."""

from tqjax.api.decode import DecodeOutput, Decoder, TQParams, decode
from tqjax.api.models import load, logits, reward, save
from tqjax.decoding import DecodeConfig
from tqjax.decoding.text_reader import ReaderContextError
from tqjax.io import CheckpointError, UnsupportedModelError
from tqjax.models import Model, ModelConfig, init_model
from tqjax.parallel import make_mesh

__all__ = ["CheckpointError", "DecodeConfig", "DecodeOutput", "Decoder", "Model", "ModelConfig",
           "ReaderContextError", "TQParams", "UnsupportedModelError", "decode", "init_model", "load", "logits", "make_mesh", "reward", "save"]
