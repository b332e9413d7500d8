"""benchmarks/validation.py runs at toy size and prints a row per step with a time."""

from __future__ import annotations

import re

import pytest

from benchmarks import validation


def test_the_validation_benchmark_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert validation.main(["--repeat", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("quickstart.toml: median of 3 calls per step")
    for step in ("load_experiment", "experiment_from_dict", "preflight", "MeterSpec.from_mapping"):
        (row,) = [line for line in out.splitlines() if line.startswith(step + " ")]
        assert re.search(r"\d+\.\d{3} ms \(p90 +\d+\.\d{3}\)", row), row
    assert "this tree: htfl from " in out
