"""Test-wide set-up: 8 virtual CPU devices and a persistent compilation cache.

XLA_FLAGS must be set before JAX initialises its backends, so this runs at import time.
"""

import os

# The suite's programs are tiny: their time is mostly XLA:CPU compiling them, and LLVM at -O0 cuts
# that by ~40 % (tests/models/test_cache.py's bfloat16 test: 46.6 s -> 27.7 s). Subprocesses the
# tests start inherit the flags. A level the caller set is kept.
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_backend_optimization_level" not in _flags:
    _flags += " --xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
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


@pytest.fixture(autouse=True, scope="module")
def _forget_compiled_programs():
    """Drop every compiled program after each test module: a process that holds a folder's worth
    of them crashed inside XLA:CPU's compiler late in a run (a segfault, 2026-12-05)."""
    yield
    jax.clear_caches()
    gc.collect()
