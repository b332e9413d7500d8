"""The Termux recipe's check of Termux's prebuilt packages (roles/runtime/files/termux_check.py),
run here with this machine's Python against its real installed distributions (no phone here:
what it reports for a phone's packages is the same code path)."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "deploy/roles/runtime/files/termux_check.py"


def _check(wanted: list[dict]) -> dict:
    out = subprocess.run(
        [sys.executable, "-", json.dumps(wanted)],
        input=SCRIPT.read_text(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_present_new_enough_importable_packages_pass() -> None:
    result = _check(
        [
            {"package": "python-torch", "dist": "torch", "module": "torch", "spec": ">=2.2"},
            {"package": "python-numpy", "dist": "numpy", "module": "numpy", "spec": ">=1.26,<3"},
        ]
    )
    assert result["problems"] == []
    assert result["versions"]["numpy"] == importlib.metadata.version("numpy")


def test_each_missing_old_or_broken_package_is_named() -> None:
    result = _check(
        [
            {"package": "python-nothing", "dist": "no-such-dist", "module": "x", "spec": ""},
            {
                "package": "python-numpy",
                "dist": "numpy",
                "module": "numpy",
                "spec": ">=99",
                "why": "flwr 1.41",
            },
            {
                "package": "python-psutil",
                "dist": "psutil",
                "module": "no_such_module_here",
                "spec": ">=1",
            },
        ]
    )
    problems = result["problems"]
    assert len(problems) == 3, problems
    assert (
        problems[0] == "python-nothing: no-such-dist is not installed (pkg install python-nothing)"
    )
    assert (
        problems[1].startswith("python-numpy: numpy ")
        and "does not satisfy >=99 (flwr 1.41)" in problems[1]
    )
    assert problems[2].startswith(
        "python-psutil: import no_such_module_here fails: ModuleNotFoundError"
    )
    assert result["versions"]["no-such-dist"] is None
