"""`python -m benchmarks.containers` at toy size: one containerised device, as a user runs it."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.test_benchmarks import run_benchmark

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.benchmark]

if os.geteuid() != 0 or not (shutil.which("podman-compose") and shutil.which("debootstrap")):
    pytest.skip("needs root, podman-compose and debootstrap", allow_module_level=True)


def test_containers_benchmark_runs_at_toy_size() -> None:
    out = run_benchmark("benchmarks.containers", "--sizes", "1", "--settle", "1", timeout=900)
    (row,) = [line for line in out.splitlines() if line.startswith("| 1 |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[2]) > 0 and float(cells[3]) > 0, row
