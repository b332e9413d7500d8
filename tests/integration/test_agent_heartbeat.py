"""An agent survives Flower's task heartbeats around the end of every task.

Regression for a race in the worker: it used to stop the heartbeat only after
``push_task_output`` had invalidated the task token, so a heartbeat sent in between got
HTTP 401 and Flower's retry handler answered with SIGINT, shutting the agent down (seen with
20 agents on 2 cores, where most tasks outlast the 5 s before heartbeats start). Here the
agents start heartbeats at once and send them back to back, so a heartbeat is in flight
whenever a task ends: the old order failed this test every time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from htfl.workstation.local_fleet import expand_selection
from htfl.workstation.server.results import read_rows
from tests.fleet_runs import (
    TWO_DEVICES,
    PatchedAgentFleet,
    boot_agent_with,
    run_on_fleet,
    two_device_fedavg,
)

pytestmark = pytest.mark.integration

#: Boots ``htfl agent`` with Flower's heartbeat interval at zero and htfl's start delay at zero.
HEARTBEAT_STORM_BOOT = boot_agent_with(
    "import flwr.supercore.heartbeat as hb; import htfl.device.worker as w; "
    "hb.HEARTBEAT_DEFAULT_INTERVAL = 0; hb.HEARTBEAT_CALL_TIMEOUT = 0; "
    "w.HEARTBEAT_AFTER_SECONDS = 0.0"
)
ROUNDS = 3
EXPERIMENT = two_device_fedavg("heartbeat-storm", rounds=ROUNDS, train_fraction=0.1)


def test_agents_survive_heartbeats_at_every_task_end(tmp_path: Path) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(EXPERIMENT)
    fleet = PatchedAgentFleet(
        expand_selection(TWO_DEVICES), tmp_path / "fleet", boot=HEARTBEAT_STORM_BOOT
    )
    with fleet:
        summary = run_on_fleet(fleet, path, tmp_path / "results")
        assert summary["status"] == "finished", (
            f"{summary.get('error')}\n{fleet.log_tails(list(fleet.procs))}"
        )
        assert fleet.check_alive() == []
        agent_logs = fleet.log_tails([h.name for h in fleet.devices], lines=100_000)
        assert "task-token authentication failed" not in agent_logs
    rows = read_rows(tmp_path / "results" / "heartbeat-storm")
    assert [r["status"] for r in rows] == ["ok"] * (ROUNDS * len(TWO_DEVICES))
