"""`htfl fleet up --engine processes`: the lab as local processes, found by `status` and
stopped by `down` from another shell, with nothing of it left running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from htfl.ports import free_port
from htfl.workstation.fleet import htb
from tests.integration.conftest import fleet_processes

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def htfl(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "htfl", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_processes_lab_up_status_down(tmp_path: Path) -> None:
    inventory = REPO / "deploy" / "inventory" / "sim-lab.yml"
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "htfl",
            "fleet",
            "up",
            "--engine",
            "processes",
            "--project",
            "lab",
            "--inventory",
            str(inventory),
            "--limit",
            "2",
            "--port",
            str(free_port()),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    state = tmp_path / "build" / "fleet" / "lab" / "processes.json"
    try:
        end = time.monotonic() + 180
        while not state.exists():
            assert up.poll() is None, up.stdout.read() if up.stdout else ""
            assert time.monotonic() < end, "the lab did not come up"
            time.sleep(0.5)
        devices = json.loads(state.read_text())["devices"]
        assert len(devices) == 2
        # the lab's record, which `htfl run` against its SuperLink adds to the results
        lab_file = state.parent / "lab.json"
        while not lab_file.exists():
            assert time.monotonic() < end, "no lab.json"
            time.sleep(0.2)
        lab = json.loads(lab_file.read_text())
        assert lab["engine"] == "processes" and sorted(lab["devices"]) == sorted(devices)
        assert lab["time_dilation"] >= 1 and lab["superlink"].startswith("127.0.0.1:")
        share = htb.STATE_DIR / "none"
        if os.geteuid() == 0:  # the kernel paces each device's bandwidth: htb classes on lo
            assert "bandwidth: kernel htb" in lab["applied"]["link"], lab["applied"]
            (share,) = [p for p in htb.STATE_DIR.glob(f"{up.pid}-*.json")]
            ours = json.loads(share.read_text())["minors"]
            assert len(ours) == 2 * len(devices) and set(ours) <= htb.class_minors("lo")
        status = htfl(tmp_path, "fleet", "status", "--engine", "processes", "--project", "lab")
        assert all(name in status.stdout for name in devices), status.stdout
        assert fleet_processes(tmp_path)  # SuperLink and agents, by their FLWR_HOME
        down = htfl(tmp_path, "fleet", "down", "--engine", "processes", "--project", "lab")
        assert down.returncode == 0, down.stderr
        assert up.wait(60) == 0
    finally:
        if up.poll() is None:
            up.terminate()
            up.wait(60)
    assert not state.exists() and not (state.parent / "lab.json").exists()
    assert fleet_processes(tmp_path) == []
    if os.geteuid() == 0:  # `down` took its htb classes off lo (ids another fleet took since
        assert not share.exists()  # then aside)
        others = {
            m for p in htb.STATE_DIR.glob("*.json") for m in json.loads(p.read_text())["minors"]
        }
        assert not (set(ours) & htb.class_minors("lo")) - others
