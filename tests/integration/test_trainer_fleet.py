"""The trainer split on a real local fleet: one device's agent trains in a trainer process run
by a DIFFERENT interpreter (``htfl agent --trainer-python``), the other in its own process.

The trainer's interpreter is a separate venv with torch, numpy and pydantic and **no flwr**
(tests/support/trainer_venv.py): the stand-in for a Jetson's JetPack Python with NVIDIA's
torch, which cannot run here (x86-64, no GPU). It proves the trainer needs no flwr and runs
in another interpreter; that it runs under Python 3.10 is checked in
tests/test_trainer_process.py.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from htfl.workstation.local_fleet import LocalFleet, expand_selection
from tests.fleet_runs import TWO_DEVICES, run_on_fleet, two_device_fedavg
from tests.support.trainer_venv import trainer_venv

pytestmark = pytest.mark.integration

#: the device whose agent uses a trainer process (the other trains in its agent)
SPLIT = "jetson-nano-01"


@dataclass
class TrainerFleet(LocalFleet):
    """A local fleet whose agents named in ``trainer_python`` get ``--trainer-python``."""

    trainer_python: dict[str, str] = field(default_factory=dict)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        if "agent" in argv and name in self.trainer_python:
            argv = [*argv, "--trainer-python", self.trainer_python[name]]
        return super()._spawn(name, argv, env)


@pytest.fixture(scope="module")
def venv_python() -> Path:
    python = trainer_venv()
    flwr = subprocess.run([str(python), "-c", "import flwr"], capture_output=True, timeout=120)
    assert flwr.returncode != 0, "the trainer venv must not have flwr"
    return python


def _trainers(fleet: LocalFleet, python: Path) -> list[psutil.Process]:
    """The agent's trainer processes: its children run by ``python``."""
    agent = psutil.Process(fleet.procs[SPLIT].pid)
    return [p for p in agent.children() if p.cmdline()[:1] == [str(python)]]


def _rows(out: Path) -> list[dict]:
    path = out / "rounds.csv"
    if not path.exists():
        return []
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_a_device_trains_in_another_interpreter_without_flwr(
    tmp_path: Path, venv_python: Path
) -> None:
    exp = tmp_path / "split.toml"
    exp.write_text(two_device_fedavg("trainer-split", rounds=2, train_fraction=0.3))
    fleet = TrainerFleet(
        expand_selection(TWO_DEVICES),
        tmp_path / "fleet",
        trainer_python={SPLIT: str(venv_python)},
    )
    with fleet:
        summary = run_on_fleet(fleet, exp, tmp_path / "results", timeout=600)
        assert summary["status"] == "finished", summary
        trainers = _trainers(fleet, venv_python)
        assert len(trainers) == 1  # one long-lived trainer served setup and both rounds
    out = tmp_path / "results" / "trainer-split"
    rows = _rows(out)
    assert {(r["device"], r["round"], r["status"]) for r in rows} == {
        (d, str(n), "ok") for d in (SPLIT, "orange-pi-5b-01") for n in (1, 2)
    }
    assert all(float(r["test_accuracy"]) > 0 for r in rows if r["round"] == "2")
    devices = {d["device"]: d for d in json.loads((out / "devices.json").read_text())}
    assert devices[SPLIT]["info_trainer_executable"] == str(venv_python)
    assert devices["orange-pi-5b-01"]["info_trainer_executable"] == sys.executable
    assert not trainers[0].is_running()  # stopped with its agent


def test_a_trainer_that_dies_mid_run_is_that_devices_error_rows(
    tmp_path: Path, venv_python: Path
) -> None:
    """Killed after round 1: the device's later rounds are error rows naming the trainer; the
    other device and the run go on, and the agent itself stays up."""
    exp = tmp_path / "dies.toml"
    exp.write_text(two_device_fedavg("trainer-dies", rounds=4, train_fraction=0.3))
    out = tmp_path / "results" / "trainer-dies"
    fleet = TrainerFleet(
        expand_selection(TWO_DEVICES),
        tmp_path / "fleet",
        trainer_python={SPLIT: str(venv_python)},
    )
    with fleet:
        import threading

        result: dict = {}
        runner = threading.Thread(
            target=lambda: result.update(run_on_fleet(fleet, exp, tmp_path / "results", 600))
        )
        runner.start()
        end = time.monotonic() + 600
        while not any(r["round"] == "1" for r in _rows(out)) and time.monotonic() < end:
            assert runner.is_alive(), result
            time.sleep(0.1)
        (trainer,) = _trainers(fleet, venv_python)
        os.kill(trainer.pid, signal.SIGKILL)
        runner.join(600)
        assert result.get("status") == "finished", result
        assert not fleet.check_alive()  # no agent exited
    rows = _rows(out)
    split = [r for r in rows if r["device"] == SPLIT]
    assert split[0]["round"] == "1" and split[0]["status"] == "ok"
    failed = [r for r in split if r["status"] == "error"]
    assert failed and failed[-1]["round"] == "4", split
    for r in failed:
        assert "trainer process" in r["error"] and "status -9" in r["error"], r["error"]
    assert {r["status"] for r in rows if r["device"] != SPLIT} == {"ok"}
