"""Checkpoint import and export: Hugging Face folders, safetensors, llama.cpp GGUF files, tqjax
(orbax) checkpoints."""

from tqjax.io.checkpoint import is_tqjax_checkpoint, load_checkpoint, save_checkpoint
from tqjax.io.errors import CheckpointError, UnsupportedModelError
from tqjax.io.gguf import is_gguf, load_gguf
from tqjax.io.hf import load_hf, load_tokenizer
from tqjax.io.hf_config import config_from_hf

__all__ = ["CheckpointError", "UnsupportedModelError", "config_from_hf", "is_tqjax_checkpoint",
           "is_gguf", "load_checkpoint", "load_gguf", "load_hf", "load_tokenizer", "save_checkpoint"]
