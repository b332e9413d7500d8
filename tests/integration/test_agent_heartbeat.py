"""An agent survives Flower's task heartbeats around the end of every task.

Regression for a race in the worker: it used to stop the heartbeat only after
``push_task_output`` had invalidated the task token, so a heartbeat sent in between got
HTTP 401 and Flower's retry handler answered with SIGINT, shutting the agent down (seen with
20 agents on 2 cores, where most tasks outlast the 5 s before heartbeats start). Here the
agents start heartbeats at once and send them back to back, so a heartbeat is in flight
whenever a task ends: the old order failed this test every time.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from htfl.workstation.local_fleet import LocalFleet, expand_selection
from htfl.workstation.server.results import read_rows
from tests.fleet_runs import run_on_fleet

pytestmark = pytest.mark.integration

#: Boots ``htfl agent`` with Flower's heartbeat interval at zero and htfl's start delay at zero.
HEARTBEAT_STORM_BOOT = (
    "import sys; import flwr.supercore.heartbeat as hb; import htfl.device.worker as w; "
    "hb.HEARTBEAT_DEFAULT_INTERVAL = 0; hb.HEARTBEAT_CALL_TIMEOUT = 0; "
    "w.HEARTBEAT_AFTER_SECONDS = 0.0; "
    "from htfl.cli import main; sys.exit(main(sys.argv[1:]))"
)

CLASSES = {"jetson-nano": 1, "orange-pi-5b": 1}
ROUNDS = 3
EXPERIMENT = f"""
[experiment]
id = "heartbeat-storm"
rounds = {ROUNDS}
eval_every = {ROUNDS}
seed = 1
[algorithm]
name = "fedavg"
[data]
dataset = "digits"
partition = "iid"
train_fraction = 0.1
[training]
batch_size = 16
[devices]
classes = {{ "jetson-nano" = 1, "orange-pi-5b" = 1 }}
deadline_seconds = 120
min_replies = 2
[models]
feature_dim = 16
"jetson-nano" = "cnn4"
"orange-pi-5b" = "cnn4"
"""


class HeartbeatStormFleet(LocalFleet):
    """A local fleet whose agents boot with :data:`HEARTBEAT_STORM_BOOT`."""

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        if argv[1:4] == ["-m", "htfl", "agent"]:
            argv = [argv[0], "-c", HEARTBEAT_STORM_BOOT, *argv[3:]]
        return super()._spawn(name, argv, env)


def test_agents_survive_heartbeats_at_every_task_end(tmp_path: Path) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(EXPERIMENT)
    with HeartbeatStormFleet(expand_selection(CLASSES), tmp_path / "fleet") as fleet:
        summary = run_on_fleet(fleet, path, tmp_path / "results")
        assert summary["status"] == "finished", (
            f"{summary.get('error')}\n{fleet.log_tails(list(fleet.procs))}"
        )
        assert fleet.check_alive() == []
        agent_logs = fleet.log_tails([h.name for h in fleet.devices], lines=100_000)
        assert "task-token authentication failed" not in agent_logs
    rows = read_rows(tmp_path / "results" / "heartbeat-storm")
    assert [r["status"] for r in rows] == ["ok"] * (ROUNDS * len(CLASSES))
