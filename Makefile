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

# One pytest process for the whole suite. It used to run one process per folder: XLA:CPU crashed
# late in a whole-suite process (a segfault and an abort while compiling sharded programs,
# 2026-12-03). tests/conftest.py now drops every compiled program after each test module, and the
# whole suite passes in one process (2026-12-06, fresh clone).
test: $(STAMP)
	$(BIN)/python -m pytest tests

clean:
	rm -rf $(VENV) .jax_cache .jax_cache_multiprocess .pytest_cache
