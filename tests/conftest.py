"""Test-wide set-up: 8 virtual CPU devices and a persistent compilation cache.

XLA_FLAGS must be set before JAX initialises its backends, so this runs at import time.
"""

import os

# The flags the caller gave, before the suite's compile-time flags below: a test whose time is
# execution, not compiling, runs its child process with these (the -O0 below makes XLA:CPU's code
# slower to run).
CALLER_XLA_FLAGS = os.environ.get("XLA_FLAGS", "")

# The suite's programs are tiny: their time is mostly XLA:CPU compiling them, and LLVM at -O0 cuts
# that by ~40 % (tests/models/test_cache.py's bfloat16 test: 46.6 s -> 27.7 s). Subprocesses the
# tests start inherit the flags. A level the caller set is kept.
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_backend_optimization_level" not in _flags:
    _flags += " --xla_backend_optimization_level=0"
_flags += " --xla_force_host_platform_device_count=8"

# XLA:CPU's MLIR fusion emitters take half its compile time on this suite's programs; the older
# emitters compile them twice as fast (tests/decoding/test_cross.py's text-reference tests:
# backend compile 51.9 s -> 26.1 s, wall 82.5 s -> 54.5 s; jax 0.10.2, 2026-12-06). Code generated
# as one LLVM module instead of split for parallel compiling is another 5 % faster to compile on
# these 2 busy cores (four TQ*, CD and best-of-N decodes: 10.8 s -> 10.3 s). An XLA that no longer
# knows a flag aborts at start-up, so a subprocess tries each first and the suite runs without it.
FAST_COMPILE = ("--xla_cpu_use_fusion_emitters=false", "--xla_cpu_parallel_codegen_split_count=1")


def _xla_accepts(flags: str) -> bool:
    import subprocess
    import sys

    probe = "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode == 0


_wanted = [f for f in FAST_COMPILE if f.split("=")[0] not in _flags]
if _wanted and not _xla_accepts(" ".join(_wanted)):
    _wanted = [f for f in _wanted if _xla_accepts(f)]
_flags += "".join(" " + f for f in _wanted)
os.environ["XLA_FLAGS"] = _flags.strip()
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # noqa: E402

# The persistent compilation cache is opt-in (TQJAX_TEST_CACHE=1 make test): on XLA:CPU (jax 0.10)
# this suite's processes aborted inside the cache, reading an executable back and writing one
# (2026-12-03, fresh clones), so CI compiles everything in memory.
CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".jax_cache")
if os.environ.get("TQJAX_TEST_CACHE") == "1":
    jax.config.update("jax_compilation_cache_dir", CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

import gc  # noqa: E402

import pytest  # noqa: E402

# Two library constants the suite sets to compile fewer, smaller programs (2026-12-06, measured on
# the 2-core machine with two workers):
# - its 2-layer models run their layers as the `lax.scan` that every real model runs on one device,
#   not unrolled (`DecodeConfig(layers="auto")` unrolls at most `UNROLL_LAYERS` layers): one
#   layer body per loop instead of two; the suite's test time fell from 2,136 s to 1,953 s.
#   tests/decoding/test_layouts.py runs both layouts and asserts the same tokens, and the shipped
#   4-layer models (tests/cli) still run unrolled;
# - the text readers' smallest bucket is 16 slots, not 8 (`text_reader.bucket`): the short
#   suffixes of the suite's tiny horizons share one scoring program (tests/decoding/test_cross.py:
#   264 s -> 217 s).
# Tests of the rules themselves read the library's values (`LIBRARY_UNROLL_LAYERS`).
from tqjax.decoding import text_reader  # noqa: E402
from tqjax.models import transformer  # noqa: E402

LIBRARY_UNROLL_LAYERS = transformer.UNROLL_LAYERS
transformer.UNROLL_LAYERS = 1
text_reader.MIN_BUCKET = 16


@pytest.fixture
def library_layout(monkeypatch):
    """`transformer.UNROLL_LAYERS` as the library ships it, for tests of the ``auto`` rule."""
    monkeypatch.setattr(transformer, "UNROLL_LAYERS", LIBRARY_UNROLL_LAYERS)


@pytest.fixture(autouse=True, scope="module")
def _forget_compiled_programs():
    """Drop every compiled program after each test module: a process that holds a folder's worth
    of them crashed inside XLA:CPU's compiler late in a run (a segfault, 2026-12-05)."""
    yield
    jax.clear_caches()
    gc.collect()
