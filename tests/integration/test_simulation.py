"""`htfl run EXPERIMENT --simulate N` on Flower's simulation runtime with its Ray backend, run as
a user runs it: the same ServerApp and results directory as a fleet run, every row modelled
from its device class, and stragglers judged on modelled time. Nothing of Ray outlives it."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import psutil
import pytest

from htfl.devices import device_class
from tests.integration.conftest import htfl

pytestmark = pytest.mark.integration

EXPERIMENT = """
[experiment]
id = "{id}"
rounds = 2
eval_every = 1
seed = 3
[algorithm]
name = "fedproto"
[data]
dataset = "digits"
partition = "iid"
train_fraction = 0.5
[training]
batch_size = 16
[devices]
classes = {{ "jetson-agx-orin" = 2, "jetson-nano" = 2 }}
deadline_seconds = {deadline}
min_replies = 1
[models]
feature_dim = 16
"jetson-agx-orin" = "cnn4"
"jetson-nano" = "cnn4"
"""


def marked(marker: str) -> list[str]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("HTFL_TEST_RUN_MARKER") == marker:
                found.append(" ".join(p.cmdline())[:200])
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def simulate(tmp_path: Path, name: str, deadline: float, section: str, *options: str) -> list[dict]:
    """Run the experiment with ``section`` as its [simulation] table and ``options``."""
    path = tmp_path / f"{name}.toml"
    path.write_text(EXPERIMENT.format(id=name, deadline=deadline) + "[simulation]\n" + section)
    # every process the run starts (Ray's included) inherits this marker
    env = {**os.environ, "HTFL_TEST_RUN_MARKER": str(path)}
    proc = htfl("run", str(path), "--results", str(tmp_path), *options, timeout=480, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Ray's workers exit once they see their raylet gone: give them a bounded while
    end = time.monotonic() + 60
    while marked(str(path)) and time.monotonic() < end:
        time.sleep(1)
    assert not marked(str(path)), "processes of the run left behind"
    out = tmp_path / name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished", summary
    assert len(json.loads((out / "devices.json").read_text())) == 4  # of 4 or 5 virtual clients
    assert not (out / "simulation-state").exists()
    with open(out / "rounds.csv") as fh:
        return list(csv.DictReader(fh))


def test_simulated_run_rows_are_modelled_from_each_class(tmp_path: Path) -> None:
    # the file asks for 4 virtual clients, the command for 5: the command wins, and the record
    # says what ran
    rows = simulate(tmp_path, "sim", 600, "clients = 4\ncpus_per_client = 1.0\n", "--simulate", "5")
    recorded = json.loads((tmp_path / "sim" / "experiment.json").read_text())["simulation"]
    assert recorded["clients"] == 5 and recorded["client_state"] == "memory"
    assert len(rows) == 2 * 4
    for row in rows:
        profile = device_class(row["device_class"]).profile
        assert row["status"] == "ok" and row["modelled"] == "True", row
        train = float(row["train_seconds"])
        assert float(row["energy_joules"]) >= profile.busy_watts * train > 0
        assert float(row["download_seconds"]) >= profile.link_latency_ms / 1000
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0
        # bytes each way, as a deployment would move them (no wire here); up: at least the
        # class prototypes (10 digits x 16 features of float32)
        for key in ("bytes_down", "bytes_up", "eval_bytes_down", "eval_bytes_up"):
            assert int(row[key]) > 0, (key, row)
        assert int(row["bytes_up"]) > 10 * 16 * 4
        # and the modelled transfer is those bytes over the class's link
        assert float(row["download_seconds"]) == pytest.approx(
            int(row["bytes_down"]) * 8 / (profile.link_mbit_s * 1e6)
            + profile.link_latency_ms / 1000
        )


def test_stragglers_follow_modelled_time_with_state_on_disk(tmp_path: Path) -> None:
    # no device trains an epoch in a millisecond: every reply is late in modelled time,
    # however fast the host answered; the state policy is disk
    # and the run is simulated from the file's [simulation] section alone
    rows = simulate(tmp_path, "late", 0.001, 'clients = 4\nclient_state = "disk"\n')
    recorded = json.loads((tmp_path / "late" / "experiment.json").read_text())["simulation"]
    assert recorded["clients"] == 4 and recorded["client_state"] == "disk"
    assert len(rows) == 2 * 4
    for row in rows:
        assert row["status"] == "late", row
        assert "modelled round time" in row["error"] and "past the 0 s deadline" in row["error"]
