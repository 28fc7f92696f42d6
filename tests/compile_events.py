"""Counting what JAX traces and compiles, for tests that assert work was or was not done."""

from __future__ import annotations

import contextlib

from jax._src import monitoring


@contextlib.contextmanager
def compile_events(part: str = "/compile/"):
    """A list that collects the names of JAX's compile-stage events containing ``part`` while the
    block runs (``"/compile/"``: tracing, lowering and compiling; ``"backend_compile"``: XLA
    compilations only)."""
    seen = []

    def listen(name, secs, **kw):
        if part in name:
            seen.append(name)

    monitoring.register_event_duration_secs_listener(listen)
    try:
        yield seen
    finally:
        monitoring.unregister_event_duration_listener(listen)
