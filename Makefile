# The two commands: `make run` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp

.PHONY: install run test bench lint demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start orderbell on embedded SQLite with the demo shop: API + worker on http://127.0.0.1:8000
run: install
	$(BIN)/orderbell migrate
	$(BIN)/orderbell serve --demo

## Install and run the whole test suite
test: install
	$(BIN)/pytest

## Benchmarks: figures with same-run baselines; writes bench/results/latest.json
bench: install
	$(BIN)/python -m bench

## Replay a day of sample orders through the real pipeline and print the message log
demo: install
	ORDERBELL_DATABASE_URL=sqlite:///./var/demo.db $(BIN)/orderbell demo

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
