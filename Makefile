# One command each: `make demo` (main job on a local simulated fleet), `make test-fast` (the unit
# tests, the edit-and-check loop), `make test` (everything, as CI runs it).
VENV ?= .venv
PYTHON ?= python3
# The CPU build is the default; a GPU user picks theirs, e.g. make setup TORCH_SPEC="torch==2.5.1"
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast test-qemu typecheck lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

# The quickstart on a local fleet, then its report (htfl report prints the page's path).
demo: setup
	$(BIN)/htfl run experiments/quickstart.toml --local-fleet 4
	$(BIN)/htfl report results/quickstart

# Unit tests: no Flower processes, no root, no benchmark runs, not the deploy tree's tests.
FAST_TESTS := -m "not integration and not root and not benchmark" --ignore=tests/deploy

test-fast: setup
	$(BIN)/python -m pytest -q $(FAST_TESTS)

# Everything, as CI runs it (.ci/run): lint, the type checker, then every test (the root-only
# SSH fleet of tests/deploy included; see tests/deploy/README). The slow tests mostly wait (on
# Flower's polls, agents' start-up, ssh), so they run in TEST_WORKERS processes even on 2 cores;
# --dist loadscope keeps each module on one worker, so a module's one fleet (or SSH fleet) is
# started once and its tests run in order. (Not loadgroup: pytest-xdist 3.8's xdist_group
# marks are ignored under pytest 9.)
TEST_WORKERS ?= 3

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope

# Only the emulated arm64 board (tests/deploy/test_aarch64_qemu.py, root; part of `make test`):
# every arm64 instruction of its provisioning and round runs under QEMU (about 10 minutes on an
# idle 2-core machine once its rootfs is cached, far more under load).
test-qemu: setup
	$(BIN)/python -m pytest -q -rA -s -m qemu tests/deploy/test_aarch64_qemu.py

typecheck: setup
	$(BIN)/python -m mypy

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check htfl tests benchmarks

bench: setup
	$(BIN)/python -m benchmarks.round_overhead

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache .mypy_cache
