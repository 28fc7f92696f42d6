# The two commands of the README: `make demo` (the default job) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export TRANSFORMERS_VERBOSITY := error
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,plot]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tqjax decode

# One pytest process per test folder: in one process for the whole suite, XLA:CPU crashed late in
# the run (a segfault and an abort while compiling sharded programs, 2026-12-03) although each
# folder passes on its own; fresh processes keep the compiled-program state small.
test: $(STAMP)
	set -e; for d in tests/[a-z]*/; do $(BIN)/python -m pytest $$d; done

clean:
	rm -rf $(VENV) .jax_cache .jax_cache_multiprocess .pytest_cache
