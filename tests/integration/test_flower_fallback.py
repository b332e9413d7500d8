"""An agent on a Flower release its adapter was not written for starts with stock Flower.

A real ``htfl agent`` process boots with the adapter's version gate changed to pretend another
Flower release, beside one whose adapter fits. Both join a real SuperLink and answer every
message of a short experiment; the pretending one logs why it runs stock Flower, and its
slower stock polls and missing byte counts are the only difference.
"""

from __future__ import annotations

import json
import urllib.request
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

#: Boots ``htfl agent`` with the adapter written, as far as it knows, for a Flower 0.9.
PRETEND_OTHER_FLOWER = boot_agent_with(
    "import htfl.flower_adapter as adapter; adapter.SUPPORTED_FLWR = '0.9.'"
)
STOCK = "jetson-nano-01"  # the agent that pretends; the orange-pi-5b one fits
EXPERIMENT = two_device_fedavg("stock-flower", rounds=1, train_fraction=0.05)


def payload_bytes(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as res:
        text = res.read().decode()
    return {
        line.split('direction="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("htfl_device_network_payload_bytes_total{")
    }


def test_an_agent_on_another_flower_runs_stock_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(EXPERIMENT)
    with PatchedAgentFleet(
        expand_selection(TWO_DEVICES),
        tmp_path / "fleet",
        boot=PRETEND_OTHER_FLOWER,
        patched=frozenset({STOCK}),
    ) as fleet:
        names = [h.name for h in fleet.devices]
        assert STOCK in names, names
        summary = run_on_fleet(fleet, path, tmp_path / "results")
        assert summary["status"] == "finished", (
            f"{summary.get('error')}\n{fleet.log_tails(list(fleet.procs))}"
        )
        assert fleet.check_alive() == []
        logs = {n: fleet.log_tails([n], lines=100_000) for n in names}
        ports = {h.name: h.exporter_port for h in fleet.devices}
        counted = {n: payload_bytes(ports[n]) for n in names}
    warning = "adapter written for 0.9.x"
    assert warning in logs[STOCK] and "runs stock Flower" in logs[STOCK], logs[STOCK][-3000:]
    assert all(warning not in text for n, text in logs.items() if n != STOCK)
    # both answered every message: hello, setup, one train round with its evaluation
    rows = read_rows(tmp_path / "results" / "stock-flower")
    assert {r["device"]: r["status"] for r in rows} == dict.fromkeys(names, "ok")
    assert all(float(r["test_accuracy"]) >= 0 for r in rows)
    setup = json.loads((tmp_path / "results" / "stock-flower" / "setup.json").read_text())
    assert {s["device"] for s in setup} == set(names)
    # the server counts every device's bytes; a stock SuperNode counts none of its own
    assert all(int(r["bytes_up"]) > 0 and int(r["bytes_down"]) > 0 for r in rows)
    assert counted[STOCK] == {"up": 0.0, "down": 0.0}
    # a tuned agent counts what its SuperNode moved: the server's rows, hello and setup
    tuned = next(n for n in names if n != STOCK)
    for direction, cols in (
        ("down", ("bytes_down", "eval_bytes_down")),
        ("up", ("bytes_up", "eval_bytes_up")),
    ):
        (device_setup,) = [s for s in setup if s["device"] == tuned]
        recorded = sum(int(r[c]) for r in rows if r["device"] == tuned for c in cols)
        recorded += (
            device_setup[f"hello_bytes_{direction}"] + device_setup[f"setup_bytes_{direction}"]
        )
        assert counted[tuned][direction] == pytest.approx(recorded, rel=0.01), direction
