#!/usr/bin/env bash
# TQ* throughput on whatever accelerator JAX finds, ~1B random Llama in bfloat16, one unattended
# call of at most 10 minutes. Arguments go to accelerator.py:
#   --real FILE   also the real SmolLM2-135M-Instruct in bfloat16 (authors' loop, planner vs compiled memory).
#                 The machine has no network: copy ~/.cache/tqjax/sentiment/model/SmolLM2-135M-Instruct.Q4_1.gguf
#                 (94 MiB, made by `tqjax sentiment setup`) into the checkout, e.g. as the git-ignored
#                 /out/SmolLM2-135M-Instruct.Q4_1.gguf, and pass that path; where the copy cannot travel
#                 (a carry limit below 94 MiB), --real shapes runs random weights of its exact shapes.
#   --dry-run     every part on the CPU at tiny sizes (what tests/benchmarks/test_accelerator.py runs). Uses the project's .venv if it exists (with a GPU/TPU build of jax
# installed in it), else the python on PATH; installs tqjax in editable mode without deps.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
"$PY" -c "import jax" 2>/dev/null || { echo "jax is not importable by $PY; install jax for your accelerator first"; exit 1; }
"$PY" -c "import tqjax" 2>/dev/null || "$PY" -m pip install -q --no-deps -e .
export TRANSFORMERS_VERBOSITY=error
"$PY" -c "import jax; print('devices:', jax.devices())"
timeout 570 "$PY" benchmarks/accelerator.py "$@"
