# One command each: `make demo` (main job on a local simulated fleet), `make test` (the tests).
VENV ?= .venv
PYTHON ?= python3
# The CPU build is the default; a GPU user picks theirs, e.g. make setup TORCH_SPEC="torch==2.5.1"
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

demo: setup
	$(BIN)/htfl run experiments/quickstart.toml --local-fleet 4

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check htfl tests benchmarks

bench: setup
	$(BIN)/python benchmarks/round_overhead.py

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache
