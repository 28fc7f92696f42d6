"""Test-wide set-up: 8 virtual CPU devices and a persistent compilation cache.

XLA_FLAGS must be set before JAX initialises its backends, so this runs at import time.
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # noqa: E402

_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".jax_cache")
jax.config.update("jax_compilation_cache_dir", _CACHE)
# Only programs worth keeping: every eager call of a layer scan compiles (and would look up) a small
# program of its own, and reading those back from the cache is where XLA:CPU aborted twice.
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
