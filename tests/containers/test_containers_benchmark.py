"""`python -m benchmarks.containers`, and the containerised lab's row of
`python -m benchmarks.emulation`, at toy size: one containerised device, as a user runs them."""

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


@pytest.mark.timeout(1800)
def test_emulation_benchmarks_lab_row_runs_at_toy_size() -> None:
    """One containerised device: fleet up, idle memory, the dilation (recorded by the run),
    one round of htfl run against it, fleet down."""
    out = run_benchmark(
        "benchmarks.emulation",
        *("--classes", "jetson-nano", "--work-seconds", "0.05", "--pings", "3"),
        *("--loss-pings", "10", "--repeat", "1", "--payload-bytes", "100000"),
        *("--lab-devices", "1", "--lab-settle", "1"),
        timeout=1500,
    )
    (row,) = [line for line in out.splitlines() if line.startswith("| 1 |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[1]) > 0 and float(cells[2]) > 0, row  # fleet up, idle memory
    assert float(cells[4]) == pytest.approx(float(cells[5]), rel=1e-3), row  # dilation recorded
    assert float(cells[6]) > 0 and cells[7] == "1/1", row  # one round, its device answered
