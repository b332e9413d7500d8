"""The deploy benchmark at toy size (one SSH device), run as a user runs it:
``python -m benchmarks.deploy --sizes 1``. NEEDS ROOT, like test_ssh_fleet.py (see README)."""

from __future__ import annotations

import re

import pytest

from tests.deploy.conftest import require
from tests.support.sshfleet import missing_requirements
from tests.test_benchmarks import run_benchmark

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.benchmark]


def test_deploy_benchmark_runs_at_toy_size() -> None:
    require(missing_requirements())
    out = run_benchmark("benchmarks.deploy", "--sizes", "1", timeout=900)
    # hosts, provision 1st (ansible), provision 2nd (ansible), 2nd changed, start, stop
    row = re.search(r"^\s*1\s+[\d.]+ \(\s*[\d.]+\)\s+[\d.]+ \(\s*[\d.]+\)\s+(\d+)\s", out, re.M)
    assert row is not None, out
    assert row.group(1) == "0", out  # a second provision of an unchanged device changes nothing
