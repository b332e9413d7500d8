"""The round-overhead benchmark at toy size (one node, one round per side), run as a user runs
it: ``python -m benchmarks.round_overhead`` starts a real SuperLink, stock SuperNodes and htfl
agents, and must print its closing ratio."""

from __future__ import annotations

import pytest

from tests.test_benchmarks import run_benchmark

pytestmark = [pytest.mark.integration, pytest.mark.benchmark]


def test_round_overhead_benchmark_runs_at_toy_size() -> None:
    out = run_benchmark(
        "benchmarks.round_overhead", "--nodes", "1", "--rounds", "1", "--settle", "0", timeout=300
    )
    assert "round_overhead_ratio=" in out, out[-2000:]
    assert out.count("\nstock ") == 1 and out.count("\nhtfl ") == 1, out[-2000:]
