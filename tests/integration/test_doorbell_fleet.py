"""The doorbell on a real fleet (SuperLink, ServerApp and agents as processes): an agent that
reaches it is rung and says when its replies are in, and the ServerApp records that; an agent
that cannot reach it (a lab network that forwards only the SuperLink's port) polls the
SuperLink instead, and its rounds complete all the same. The doorbell listens on the fixed
port the experiment names (``[superlink] doorbell_port``), as a lab's firewall would need.

The second agent's network is the link relay (``htfl.workstation.fleet.relay``, unshaped) on
another loopback address, 127.0.0.2: it forwards the SuperLink's port, and nothing listens on
127.0.0.2 at the doorbell's port, so that agent's doorbell connections are refused as a
firewall's would be.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass

import pytest

from htfl.ports import free_port, wait_for_port
from htfl.workstation.local_fleet import LocalFleet, expand_selection
from htfl.workstation.server.results import read_rows
from tests.fleet_runs import run_on_fleet
from tests.support.experiments import cnn4_experiment

pytestmark = pytest.mark.integration

ROUNDS = 2
#: The lab network's other side: where the firewalled agent reaches the SuperLink.
FAR_HOST = "127.0.0.2"


@dataclass
class FirewalledFleet(LocalFleet):
    """A local fleet whose device ``firewalled`` reaches the SuperLink only through a relay
    on :data:`FAR_HOST` that forwards the SuperLink's port and nothing else."""

    firewalled: str = ""

    def _dial(self, name: str) -> str:
        if name != self.firewalled:
            return super()._dial(name)
        port = free_port(FAR_HOST)
        spec = {
            "upstream": self.address,
            "host": FAR_HOST,
            "devices": [
                {
                    "name": name,
                    "port": port,
                    "link": {"bandwidth_bit_s": 1e10, "latency_s": 0, "jitter_s": 0, "loss": 0},
                }
            ],
        }
        argv = [sys.executable, "-m", "htfl.workstation.fleet.relay"]
        proc = self._spawn("firewall", [*argv, "--spec-json", json.dumps(spec)], dict(os.environ))
        wait_for_port(port, 60, proc, self.log_dir / "firewall.log", FAR_HOST, "the relay")
        return f"{FAR_HOST}:{port}"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One run of two devices, the second behind the firewall; what it recorded."""
    tmp = tmp_path_factory.mktemp("doorbell")
    devices = expand_selection({"jetson-nano": 1, "orange-pi-5b": 1})
    bell_port = free_port()
    path = tmp / "doorbell.toml"
    path.write_text(
        cnn4_experiment(
            "doorbell",
            {"jetson-nano": 1, "orange-pi-5b": 1},
            rounds=ROUNDS,
            eval_every=1,
            train_fraction=0.1,
            tail=f"[superlink]\ndoorbell_port = {bell_port}\n",
        )
    )
    fleet = FirewalledFleet(devices, tmp / "fleet", firewalled=devices[1].name)
    with fleet:
        summary = run_on_fleet(fleet, path, tmp / "results", timeout=600)
        logs = {d.name: fleet.log_tails([d.name], lines=100_000) for d in devices}
        tails = fleet.log_tails(list(fleet.procs))
    out = tmp / "results" / "doorbell"
    assert summary["status"] == "finished", f"{summary.get('error')}\n{tails}"
    node_of = {
        d["device"]: str(d["node_id"]) for d in json.loads((out / "devices.json").read_text())
    }
    return {
        "summary": summary,
        "rows": read_rows(out),
        "near": node_of[devices[0].name],
        "far": node_of[devices[1].name],
        "far_log": logs[devices[1].name],
        "bell_port": bell_port,
    }


def test_an_agent_that_reaches_the_doorbell_uses_it(run: dict) -> None:
    bell = run["summary"]["doorbell"]
    assert bell["port"] == run["bell_port"]  # the experiment's fixed port
    # rung for every message (hello, setup, train and evaluate each round), and told the
    # ServerApp about its replies instead of being polled for them
    assert bell["waits"].get(run["near"], 0) >= 2 + 2 * ROUNDS, bell
    assert bell["reply_notices"].get(run["near"], 0) >= 2 + 2 * ROUNDS, bell
    assert bell["refused"] == 0  # every request carried the run's token


def test_an_agent_that_cannot_reach_it_polls_and_its_rounds_complete(run: dict) -> None:
    bell = run["summary"]["doorbell"]
    assert run["far"] not in bell["waits"] and run["far"] not in bell["reply_notices"], bell
    # it tried once, then polled for the rest of the run
    assert run["far_log"].count("not reachable") == 1, run["far_log"][-3000:]
    assert "polling the SuperLink" in run["far_log"]
    far_rows = [r for r in run["rows"] if str(r["node_id"]) == run["far"]]
    assert [(int(r["round"]), r["status"]) for r in far_rows] == [
        (rnd, "ok") for rnd in range(1, ROUNDS + 1)
    ]
    assert all(r["test_accuracy"] not in ("", None) for r in far_rows)
    assert all(r["status"] == "ok" for r in run["rows"])
