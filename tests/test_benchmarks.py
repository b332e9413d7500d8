"""Every benchmark runs at toy size, as a user runs it (``python -m benchmarks.NAME`` from the
repository root), and prints its closing figure: a benchmark that no longer starts is caught
here, not when someone needs its numbers.

The round-overhead benchmark is in tests/integration/test_benchmarks.py (it starts Flower
processes), the deploy benchmark in tests/deploy/test_root_benchmark.py (root, real sshd), and
``benchmarks.algorithms``' experiment files are checked against it in
tests/algorithms/test_params.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.benchmark


def run_benchmark(module: str, *args: str, timeout: float = 300) -> str:
    """Run ``python -m <module> args`` (``benchmarks.NAME``) from the repository root; its
    stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{module} failed:\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.mark.parametrize(
    "module,args,closing",
    [
        pytest.param(
            "benchmarks.power", ["--seconds", "0.3"], "power_energy_error_pct=", id="power"
        ),
        pytest.param(
            "benchmarks.telemetry_overhead",
            ["--seconds", "0.5", "--scrapes", "2"],
            "telemetry_scrape_ms=",
            id="telemetry_overhead",
        ),
        pytest.param(
            "benchmarks.data_prepare",
            ["--clients", "4", "--samples", "600", "--repeat", "1"],
            "agent fetch over HTTP",
            id="data_prepare",
        ),
        pytest.param(
            "benchmarks.in_process",
            ["--methods", "local", "--seeds", "0", "--rounds", "1"],
            "| local |",
            id="in_process",
        ),
        pytest.param(
            "benchmarks.quickstart_stability",
            ["--seeds", "0", "--rounds", "1"],
            "| 0 |",
            id="quickstart_stability",
        ),
        pytest.param(
            "benchmarks.prototype_diagnosis",
            ["--rounds", "1", "--every", "1"],
            "| 1 |",
            id="prototype",
        ),
        pytest.param(
            "benchmarks.accelerator",
            ["--archs", "cnn4", "--batch-sizes", "16", "--epochs", "2", "--devices", "cpu"],
            "| cnn4 | 16 | cpu | bf16 |",
            id="accelerator",
        ),
        pytest.param(
            "benchmarks.trainer_split",
            ["--archs", "cnn4", "--methods", "fedavg", "--rounds", "1", "--train-fraction", "0.2"],
            "| cnn4 | fedavg | process |",
            id="trainer_split",
        ),
        pytest.param(
            "benchmarks.emulation",
            ["--classes", "jetson-nano,lattepanda-delta-3", "--work-seconds", "0.05"]
            + ["--pings", "3", "--loss-pings", "10", "--repeat", "1", "--payload-bytes", "100000"]
            + ["--lab-devices", "0"],  # the containerised lab's row: test_containers_benchmark
            "emulation_time_dilation=",
            id="emulation",
        ),
        pytest.param(
            "benchmarks.payload",
            ["--feature-dim", "8", "--clients", "2", "--methods", "fd,fedproto"],
            "| fedproto |",
            id="payload",
        ),
        pytest.param(
            "benchmarks.report",
            ["--sizes", "3x2"],
            "report_render_seconds=",
            id="report",
        ),
        pytest.param(
            "benchmarks.htfllib_parity",  # the htfl side only: HtFLlib needs torchvision
            ["--toy", "--rounds", "2", "--methods", "local,fedproto,fml,fedktl"]
            + ["--family", "cnn4,resnet6", "--feature-dim", "32"],
            "| fedktl |",
            id="htfllib_parity",
        ),
    ],
)
def test_benchmark_runs_at_toy_size(module: str, args: list[str], closing: str) -> None:
    out = run_benchmark(module, *args)
    assert closing in out, out[-2000:]
