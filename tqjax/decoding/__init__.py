"""The decoding engine: TQ*, CD, ARGS, best-of-N and plain decoding as one jitted program."""

from tqjax.decoding.config import METHODS, DecodeConfig
from tqjax.decoding.engine import as_sweep, decode_arrays
from tqjax.decoding.loop import generate
from tqjax.decoding.state import DecodeState

__all__ = ["METHODS", "DecodeConfig", "DecodeState", "as_sweep", "decode_arrays", "generate"]
