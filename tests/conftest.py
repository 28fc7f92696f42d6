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
_flags += " --xla_force_host_platform_device_count=8"

# XLA:CPU's MLIR fusion emitters take half its compile time on this suite's programs; the older
# emitters compile them twice as fast (tests/decoding/test_cross.py's text-reference tests:
# backend compile 51.9 s -> 26.1 s, wall 82.5 s -> 54.5 s; jax 0.10.2, 2026-12-06). An XLA that no
# longer knows the flag aborts at start-up, so a subprocess tries it first and the suite runs
# without it there.
FAST_EMITTERS = "--xla_cpu_use_fusion_emitters=false"


def _xla_accepts(flags: str) -> bool:
    import subprocess
    import sys

    probe = "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode == 0


if "xla_cpu_use_fusion_emitters" not in _flags and _xla_accepts(FAST_EMITTERS):
    _flags += " " + FAST_EMITTERS
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


@pytest.fixture(autouse=True, scope="module")
def _forget_compiled_programs():
    """Drop every compiled program after each test module: a process that holds a folder's worth
    of them crashed inside XLA:CPU's compiler late in a run (a segfault, 2026-12-05)."""
    yield
    jax.clear_caches()
    gc.collect()
