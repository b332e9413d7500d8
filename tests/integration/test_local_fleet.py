"""End to end on a real Flower deployment: SuperLink and agents as separate processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from htfl.workstation.server.results import read_rows
from tests.integration.conftest import fleet_processes, htfl

pytestmark = pytest.mark.integration

FEDPROTO_3_ARCHS = """
[experiment]
id = "fedproto-e2e"
rounds = 4
seed = 1
[algorithm]
name = "fedproto"
[algorithm.params]
lamda = 1.0
[data]
dataset = "digits"
partition = "iid"
balanced = true
[training]
batch_size = 16
learning_rate = 0.05
momentum = 0.9
[devices]
classes = { "jetson-nano" = 1, "orange-pi-5b" = 1, "jetson-orin-nano" = 1 }
deadline_seconds = 120
min_replies = 3
[models]
feature_dim = 64
"jetson-nano" = "cnn4"
"orange-pi-5b" = "resnet6"
"jetson-orin-nano" = "resnet8"
"""


def test_fedproto_runs_on_a_real_local_fleet(tmp_path: Path) -> None:
    exp = tmp_path / "exp.toml"
    exp.write_text(FEDPROTO_3_ARCHS)
    result = htfl("run", str(exp), "--local-fleet", "3", "--results", str(tmp_path / "results"))
    assert result.returncode == 0, result.stderr[-3000:]
    out_dir = tmp_path / "results" / "fedproto-e2e"
    rows = read_rows(out_dir)
    # every client, every round, exactly once
    assert sorted((int(r["round"]), int(r["client_index"])) for r in rows) == [
        (rnd, c) for rnd in range(1, 5) for c in range(3)
    ]
    assert {r["arch"] for r in rows} == {"cnn4", "resnet6", "resnet8"}
    not_ok = [
        (r["round"], r["device"], r["status"], r["error"]) for r in rows if r["status"] != "ok"
    ]
    assert not_ok == []
    assert all(int(r["bytes_up"]) > 0 and int(r["bytes_down"]) > 0 for r in rows[3:])
    assert all(float(r["train_seconds"]) > 0 for r in rows)

    def mean_acc(rnd: int) -> float:
        scored = [r for r in rows if int(r["round"]) == rnd]
        total = sum(int(r["num_test"]) for r in scored)
        return sum(float(r["test_accuracy"]) * int(r["num_test"]) for r in scored) / total

    assert mean_acc(4) > mean_acc(1)
    assert mean_acc(4) > 0.5  # digits has 10 classes: chance is 0.1
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    for name in ("experiment.json", "devices.json", "code_version.json"):
        assert (out_dir / name).exists()
    devices = json.loads((out_dir / "devices.json").read_text())
    assert {d["device_class"] for d in devices} == {
        "jetson-nano",
        "orange-pi-5b",
        "jetson-orin-nano",
    }
    assert not fleet_processes(tmp_path), "the local fleet left processes behind"


def test_ctrl_c_stops_the_fleet_and_leaves_nothing(tmp_path: Path) -> None:
    exp = tmp_path / "exp.toml"
    exp.write_text(FEDPROTO_3_ARCHS.replace("rounds = 4", "rounds = 200"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "htfl.cli",
            "run",
            str(exp),
            "--local-fleet",
            "3",
            "--results",
            str(tmp_path / "results"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # SIGABRT dumps every thread's stack
    )
    progress = tmp_path / "results" / "fedproto-e2e" / "progress.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and '"round"' not in (
        progress.read_text() if progress.exists() else ""
    ):
        time.sleep(0.5)
    assert fleet_processes(tmp_path), "the fleet should be running mid-experiment"
    interrupted = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"htfl run still running 120 s after Ctrl-C; its threads:\n{err[-6000:]}")
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted: stopping the run" in err
    print(f"htfl run exited {time.monotonic() - interrupted:.1f} s after Ctrl-C")
    time.sleep(1)
    assert not fleet_processes(tmp_path), "Ctrl-C left fleet processes behind"
    # rounds finished before the interrupt are on disk
    assert read_rows(tmp_path / "results" / "fedproto-e2e")
    # and the record says it was stopped, not still running (written by the ServerApp, or by
    # htfl run when Flower killed the ServerApp first: record_interrupted)
    summary = json.loads((tmp_path / "results" / "fedproto-e2e" / "summary.json").read_text())
    assert summary["status"] == "stopped", summary


def test_a_bad_experiment_file_fails_before_anything_starts(tmp_path: Path) -> None:
    exp = tmp_path / "bad.toml"
    exp.write_text(FEDPROTO_3_ARCHS.replace('name = "fedproto"', 'name = "fedprot"'))
    result = htfl("run", str(exp), "--local-fleet", "3", "--results", str(tmp_path / "r"))
    assert result.returncode == 2
    assert str(exp) in result.stderr and "algorithm.name" in result.stderr
    assert not (tmp_path / "r").exists()


def test_a_device_that_leaves_is_recorded_and_the_rest_go_on(tmp_path: Path) -> None:
    """An agent stopped mid-experiment: its later rounds are recorded as errors naming why,
    the other devices finish every round, and nothing already recorded is lost."""
    exp = tmp_path / "exp.toml"
    exp.write_text(
        FEDPROTO_3_ARCHS.replace("rounds = 4", "rounds = 8")
        .replace("deadline_seconds = 120", "deadline_seconds = 20")
        .replace("min_replies = 3", "min_replies = 1")
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "htfl.cli",
            "run",
            str(exp),
            "--local-fleet",
            "3",
            "--results",
            str(tmp_path / "results"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out_dir = tmp_path / "results" / "fedproto-e2e"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (
        (out_dir / "progress.jsonl").exists()
        and '"round": 2' in (out_dir / "progress.jsonl").read_text()
    ):
        time.sleep(0.3)
    victims = [
        p
        for p in fleet_processes(tmp_path)
        if "--name" in p.cmdline() and "jetson-nano-01" in p.cmdline()
    ]
    assert len(victims) == 1
    victims[0].terminate()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    # the researcher is told at once which process went, and where its log is
    assert "fleet process exited" in err and "jetson-nano-01.log" in err
    rows = read_rows(out_dir)
    nano = [r for r in rows if r["device"] == "jetson-nano-01"]
    others = [r for r in rows if r["device"] != "jetson-nano-01"]
    assert len(rows) == 8 * 3
    assert all(r["status"] == "ok" for r in others)
    assert [r["status"] for r in nano[:2]] == ["ok", "ok"]
    assert nano[-1]["status"] in ("error", "late")
    assert nano[-1]["status"] == "late" or "no longer connected" in nano[-1]["error"]
