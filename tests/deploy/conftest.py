"""Helpers for the deploy tests: run `htfl deploy`, read its JSON outcome, require things."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def require(missing: list[str]) -> None:
    """Skip on a developer machine that lacks something; in CI (CI set) fail instead."""
    if not missing:
        return
    text = "; ".join(missing)
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide: {text}", pytrace=False)
    pytest.skip(f"missing: {text}")


def venv_tool(name: str) -> Path:
    return Path(sys.executable).parent / name


def htfl_deploy(
    *args: str, json_path: Path, timeout: float = 600
) -> tuple[subprocess.CompletedProcess, dict[str, Any]]:
    """Run `htfl deploy ...` as a user would; return the process and its --json outcome."""
    if json_path.exists():
        json_path.unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "htfl", "deploy", *args, "--json", str(json_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    outcome = json.loads(json_path.read_text()) if json_path.exists() else {}
    return proc, outcome
