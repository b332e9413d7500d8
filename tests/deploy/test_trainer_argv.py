"""The inventory's htfl_trainer_python reaches the agent's command line as --trainer-python (the
service role's argv, rendered on localhost with tests/deploy/render_service.yml), pointing at
the trainer venv the runtime role builds; without it, no such option."""

from __future__ import annotations

import json
from pathlib import Path

from htfl.workstation.deploy.wheel import build_wheel
from tests.deploy.conftest import render_service, require, venv_tool


def _argv(out: Path, wheel: Path, **extra: str) -> list[str]:
    variables = {
        "out": str(out),
        "htfl_wheel_path": str(wheel),
        "htfl_device_class": "jetson-orin-nano",
        "htfl_superlink": "10.0.0.100:8000",
        **extra,
    }
    render_service(variables)
    return json.loads((out / "argv.json").read_text())


def test_trainer_python_becomes_the_agents_trainer_venv(tmp_path: Path) -> None:
    require([] if venv_tool("ansible-playbook").exists() else ["ansible-core in this venv"])
    wheel = build_wheel(tmp_path / "wheel").path
    (tmp_path / "with").mkdir()
    argv = _argv(tmp_path / "with", wheel, htfl_trainer_python="/usr/bin/python3.10")
    assert argv[argv.index("--trainer-python") + 1] == "/opt/htfl/trainer-venv/bin/python"
    (tmp_path / "without").mkdir()
    assert "--trainer-python" not in _argv(tmp_path / "without", wheel)
