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


def render_service(variables: dict[str, Any]) -> None:
    """Render the service role's files on localhost (tests/deploy/render_service.yml) with these
    variables; they land in ``variables["out"]``."""
    deploy = REPO / "deploy"
    proc = subprocess.run(
        [
            venv_tool("ansible-playbook"),
            str(Path(__file__).parent / "render_service.yml"),
            "-e",
            json.dumps(variables),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "ANSIBLE_CONFIG": str(deploy / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(deploy / "roles"),
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(Path.home()),
        },
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


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
