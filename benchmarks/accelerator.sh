#!/usr/bin/env bash
# TQ* throughput on whatever accelerator JAX finds, ~1B random Llama in bfloat16, one unattended
# call of at most 10 minutes. Uses the project's .venv if it exists (with a GPU/TPU build of jax
# installed in it), else the python on PATH; installs tqjax in editable mode without deps.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
"$PY" -c "import jax" 2>/dev/null || { echo "jax is not importable by $PY; install jax for your accelerator first"; exit 1; }
"$PY" -c "import tqjax" 2>/dev/null || "$PY" -m pip install -q --no-deps -e .
export TRANSFORMERS_VERBOSITY=error
"$PY" -c "import jax; print('devices:', jax.devices())"
timeout 570 "$PY" benchmarks/accelerator.py "$@"
