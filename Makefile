# Two commands do all the set-up (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install browser postgres benchmarks bento clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The main job end to end on the embedded demo data.
demo: $(STAMP)
	$(BIN)/churn demo

## Headless Chromium (Debian's package) for the page tests; needs root or sudo.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

## PostgreSQL's server programs (Debian's package) for the store tests, which start a private
## cluster of their own; needs root or sudo.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq postgresql >/dev/null; }

## The whole test suite, slow tests included.
test: $(STAMP) browser postgres
	$(BIN)/ruff check .
	$(BIN)/pytest -n auto --maxprocesses 4 --dist loadfile

benchmarks: $(STAMP)
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/training.py
	$(BIN)/python benchmarks/serving.py

## A Bento of the service (the model comes from the MLflow registry at start-up).
bento: $(STAMP)
	rm -rf dist && $(BIN)/pip wheel -q . --no-deps -w dist
	$(BIN)/bentoml build .

clean:
	rm -rf demo-data mlruns mlflow.db audit.jsonl .pytest_cache
