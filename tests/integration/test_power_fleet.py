"""A 3-device local fleet where one device is measured by a meter the workstation reads (an
emulated UM34C on a pty, read by the ServerApp's power hub) and two by their own (simulated)
meters: every round is priced, its scope recorded, every sample kept in the raw traces, and
``htfl power energy`` recomputes rounds.csv from those traces."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from htfl.workstation.local_fleet import LocalFleet, expand_selection
from htfl.workstation.power.rounds import parse_spans, recompute
from htfl.workstation.power.traces import read_trace
from htfl.workstation.server.results import read_rows
from tests.fleet_runs import run_on_fleet, two_device_fedavg
from tests.integration.conftest import htfl
from tests.support.meter_emulators import UMEmulator, constant

pytestmark = pytest.mark.integration

HUB_DEVICE = "jetson-nano-02"
VOLTS, AMPS = 5.1, 0.9  # what the emulated UM34C measures on the hub device's supply


def test_workstation_and_device_meters_price_rounds_and_traces_recompute(tmp_path: Path):
    classes = {"jetson-nano": 2, "orange-pi-5b": 1}
    with UMEmulator("um34c", constant(VOLTS, AMPS)) as emu:
        inventory = tmp_path / "bench.yml"
        meter = {"driver": "um34c", "port": emu.port, "read_by": "workstation", "timeout": 0.5}
        inventory.write_text(
            yaml.safe_dump({"all": {"hosts": {HUB_DEVICE: {"htfl_meter": meter}}}})
        )
        exp_file = tmp_path / "power3.toml"
        exp_file.write_text(
            two_device_fedavg("power3", rounds=2, train_fraction=0.1)
            .replace(
                'classes = { "jetson-nano" = 1, "orange-pi-5b" = 1 }',
                'classes = { "jetson-nano" = 2, "orange-pi-5b" = 1 }',
            )
            .replace("min_replies = 2", "min_replies = 3")
            + f'\n[power]\ninventory = "{inventory}"\n'
        )
        # the hub device has no meter of its own: the workstation's UM34C measures it
        hosts = [
            dataclasses.replace(h, meter=None) if h.name == HUB_DEVICE else h
            for h in expand_selection(classes)
        ]
        with LocalFleet(hosts, tmp_path / "fleet") as fleet:
            summary = run_on_fleet(fleet, exp_file, tmp_path / "results", timeout=600)
        assert summary["status"] == "finished", summary
        assert emu.frames_sent > 10

    results = tmp_path / "results" / "power3"
    rows = read_rows(results)
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        spans = parse_spans(r["energy_spans"])
        assert len(spans) == (2 if r["round"] == "2" else 1)  # train (and evaluate, last round)
        busy = sum(e - s for s, e in spans)
        if r["device"] == HUB_DEVICE:
            assert (r["energy_meter"], r["energy_scope"]) == ("um34c", "board")
            assert float(r["energy_joules"]) == pytest.approx(VOLTS * AMPS * busy, rel=0.05)
            assert not r["power_trace_bytes"]
        else:
            assert (r["energy_meter"], r["energy_scope"]) == ("simulated", "board")
            assert float(r["energy_joules"]) > 0 and int(r["power_trace_bytes"]) > 0
    scopes = {
        d["device"]: d["power_scope"] for d in json.loads((results / "devices.json").read_text())
    }
    assert scopes == {h: "board" for h in ("jetson-nano-01", HUB_DEVICE, "orange-pi-5b-01")}

    # every sample kept, on the server's clock: the traces cover every priced interval
    for device in scopes:
        trace = list(read_trace(results / "power" / f"{device}.csv"))
        assert trace and {t.meter for t in trace} == {
            "um34c" if device == HUB_DEVICE else "simulated"
        }
        ts = [t.t for t in trace]
        assert ts == sorted(ts)
        for r in (r for r in rows if r["device"] == device):
            for s, e in parse_spans(r["energy_spans"]):
                assert ts[0] <= s and ts[-1] >= e

    again = recompute(results)
    assert len(again) == 6
    for r in again:
        assert r.recomputed == pytest.approx(r.recorded, rel=1e-6), r
    out = htfl("power", "energy", str(results))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6/6 rows match" in out.stdout
    print(out.stdout)  # the table the closing note quotes (pytest -s)
