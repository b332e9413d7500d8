"""The benchmarks that start Flower processes, at toy size, run as a user runs them:
``python -m benchmarks.round_overhead`` (one node, one round per side) starts a real SuperLink,
stock SuperNodes and htfl agents, and must print its closing ratio; ``python -m
benchmarks.algorithms`` runs one method for one round on a fleet of one device per class."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_benchmarks import run_benchmark

pytestmark = [pytest.mark.integration, pytest.mark.benchmark]


def test_round_overhead_benchmark_runs_at_toy_size() -> None:
    out = run_benchmark(
        "benchmarks.round_overhead", "--nodes", "1", "--rounds", "1", "--settle", "0", timeout=300
    )
    assert "round_overhead_ratio=" in out, out[-2000:]
    assert out.count("\nstock ") == 1 and out.count("\nhtfl ") == 1, out[-2000:]
    for side in ("stock", "htfl"):  # median, min, max, RSS, SuperLink and nodes CPU per round
        (row,) = [line.split() for line in out.splitlines() if line.startswith(side + " ")]
        assert len(row) == 7 and all(float(c) > 0 for c in row[1:]), row


def test_algorithms_benchmark_runs_at_toy_size(tmp_path: Path) -> None:
    out = run_benchmark(
        "benchmarks.algorithms",
        *("--methods", "fedavg", "--rounds", "1", "--per-class", "1"),
        *("--results", str(tmp_path), "--timeout", "240"),
        timeout=400,
    )
    assert "# digits, Dirichlet 0.1, 4 clients, 1 rounds" in out, out[-2000:]
    (row,) = [line for line in out.splitlines() if line.startswith("| fedavg |")]
    assert "failed" not in row and float(row.split("|")[2]) > 0, row


def test_simulate_benchmark_runs_at_toy_size() -> None:
    # four virtual clients in Flower's simulation runtime, one round, and the in-process path
    out = run_benchmark(
        "benchmarks.simulate", "--clients", "4", "--rounds", "1", "--methods", "fedavg", timeout=600
    )
    (row,) = [line for line in out.splitlines() if line.startswith("| 4 | fedavg |")]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert float(cells[2]) > 0 and cells[6] == "True", row
    assert abs(float(cells[4]) - float(cells[5])) < 0.02, f"simulated vs in process: {row}"
    # modelled bytes: FedAvg uploads the whole cnn4 (feature_dim 64), hundreds of KiB; round 1
    # sends no model down (every client starts from the same seeded one), only its config
    assert float(cells[8]) > 100 and 0 < float(cells[9]) < 10, row


def test_fleet_round_benchmark_runs_at_toy_size() -> None:
    out = run_benchmark("benchmarks.fleet_round", "--agents", "2", "--rounds", "1", timeout=600)
    (row,) = [line for line in out.splitlines() if line.startswith("| 1 |")]
    wall, device, overhead = (float(c) for c in row.split("|")[2:5])
    assert wall > device > 0 and overhead == pytest.approx(wall - device, abs=0.02), row
    assert out.rstrip().splitlines()[-1].startswith("fleet_round_overhead_s="), out[-2000:]
