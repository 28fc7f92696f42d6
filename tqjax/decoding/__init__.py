"""The decoding engine: TQ*, CD, ARGS, best-of-N and plain decoding as one jitted program."""

from tqjax.decoding.config import METHODS, DecodeConfig
from tqjax.decoding.decode_plan import DecodePlan, Knobs, plan_for
from tqjax.decoding.engine import decode_arrays
from tqjax.decoding.loop import generate
from tqjax.decoding.state import DecodeState

__all__ = ["METHODS", "DecodeConfig", "DecodePlan", "DecodeState", "Knobs", "decode_arrays",
           "generate", "plan_for"]
