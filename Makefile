# Two commands do all the set-up (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install benchmarks clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The main job end to end on the embedded demo data.
demo: $(STAMP)
	$(BIN)/churn demo

## The whole test suite, slow tests included.
test: $(STAMP)
	$(BIN)/pytest

benchmarks: $(STAMP)
	$(BIN)/python benchmarks/features.py

clean:
	rm -rf demo-data mlruns mlflow.db .pytest_cache
