"""A local fleet held to its class profiles (real SuperLink, agents and link relay; real
cgroups, so root): each agent in its own cgroup with its class's quota, reaching the SuperLink
through its own shaped relay; the time dilation recorded; a device over its memory cap reported
as OOM-killed, naming it; every cgroup gone afterwards; and ``htfl run --local-fleet`` doing all
of it by default."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from htfl.devices import device_class
from htfl.workstation.fleet import htb
from htfl.workstation.fleet.cgroups import detect
from htfl.workstation.fleet.emulation import EMULATION_FILE, Emulation, record_in_results
from htfl.workstation.fleet.profiles import plan_fleet, with_overrides
from htfl.workstation.local_fleet import LocalFleet, expand_selection
from tests.fleet_runs import TWO_DEVICES, run_on_fleet, two_device_fedavg
from tests.integration.conftest import fleet_processes, htfl

pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.skipif(
        os.geteuid() != 0 or detect() is None, reason="cgroup limits need root and cgroups"
    ),
]


def quota_of(group_dir: Path) -> int:
    if (group_dir / "cpu.max").exists():
        return int((group_dir / "cpu.max").read_text().split()[0])
    return int((group_dir / "cpu.cfs_quota_us").read_text())


def period_of(group_dir: Path) -> int:
    if (group_dir / "cpu.max").exists():
        return int((group_dir / "cpu.max").read_text().split()[1])
    return int((group_dir / "cpu.cfs_period_us").read_text())


def test_profiles_applied_to_a_local_fleet(tmp_path: Path) -> None:
    exp = tmp_path / "exp.toml"
    exp.write_text(two_device_fedavg("emulated", 2, 0.3))
    devices = expand_selection(TWO_DEVICES)
    plan = plan_fleet([(d.name, d.device_class) for d in devices])
    emulation = Emulation(plan)
    fleet = LocalFleet(devices, tmp_path / "fleet", emulation=emulation)
    with fleet:
        for d in plan.devices:
            group = emulation.groups[d.name]
            assert quota_of(group.dirs[0]) == d.cpu_quota_us
            # the agent itself (sh moved itself in, then exec'd it) is in its group
            pid, end = str(fleet.procs[d.name].pid), time.monotonic() + 30
            while pid not in group.procs_files[0].read_text().split():
                assert time.monotonic() < end, f"{d.name} never joined its cgroup"
                time.sleep(0.1)
            agent_args = fleet.procs[d.name].args
            assert f"127.0.0.1:{emulation.relay_ports[d.name]}" in agent_args
            # the CFS period follows the quota: equal bursts between throttles for every class
            assert period_of(group.dirs[0]) == d.cpu_period_us
        # the kernel paces each device's bandwidth (htb on lo, two classes per relay port), and
        # the relay adds latency, jitter and loss only
        shaper = emulation.shaper
        assert shaper is not None and len(shaper.minors) == 2 * len(devices)
        assert set(shaper.minors) <= htb.class_minors("lo")
        spec = json.loads((tmp_path / "fleet" / "relay.json").read_text())
        assert not any(d["pace"] for d in spec["devices"])
        summary = run_on_fleet(fleet, exp, tmp_path / "results")
        dirs = [d for g in emulation.groups.values() for d in g.dirs]
        minors = list(shaper.minors)
    # the classes went with the fleet
    assert emulation.shaper is None and not set(minors) & htb.class_minors("lo")
    assert "bandwidth: kernel htb" in emulation.applied["link"]
    record_in_results(tmp_path / "results" / "emulated", emulation)
    assert summary["status"] == "finished", summary
    assert not any(d.exists() for d in dirs)  # the cgroups went with the fleet
    # every device's traffic went through its relay (counters logged when it stopped)
    relay_log = (tmp_path / "fleet" / "relay.log").read_text()
    for d in devices:
        found = re.search(rf"{d.name}: (\{{.*\}})", relay_log)
        assert found, relay_log[-2000:]
        assert json.loads(found.group(1))["up_bytes"] > 10_000
    results = tmp_path / "results" / "emulated"
    assert json.loads((results / "summary.json").read_text())["time_dilation"] == plan.time_dilation
    rows = json.loads((results / "devices.json").read_text())
    assert {r["device"]: r["emulation"]["cpu_cores"] for r in rows} == {
        d.name: round(d.cpu_cores, 4) for d in plan.devices
    }
    assert json.loads((results / EMULATION_FILE).read_text())["applied"]["cpu"].startswith("cgroup")


def test_a_device_over_its_memory_cap_is_reported_oom_killed(tmp_path: Path) -> None:
    tiny = with_overrides(device_class("jetson-nano").profile, memory_mb=80)  # torch needs more
    devices = expand_selection({"jetson-nano": 1})
    plan = plan_fleet([(devices[0].name, "jetson-nano")], profiles={"jetson-nano": tiny})
    emulation = Emulation(plan)
    with LocalFleet(devices, tmp_path / "fleet", emulation=emulation) as fleet:
        end = time.monotonic() + 180
        while not (report := fleet.exit_report()) and time.monotonic() < end:
            time.sleep(0.5)
    assert "jetson-nano-01: killed by the kernel's OOM killer" in report, report
    assert "memory cap of 80 MiB (device class jetson-nano)" in report
    assert not any(d.exists() for g in emulation.groups.values() for d in g.dirs)
    # the cause outlives the cgroup: it is in the run's record
    (tmp_path / "devices.json").write_text(json.dumps([{"device": "jetson-nano-01"}]))
    (tmp_path / "summary.json").write_text(json.dumps({"status": "failed"}))
    record_in_results(tmp_path, emulation)
    row = json.loads((tmp_path / "devices.json").read_text())[0]
    assert "killed by the kernel's OOM killer" in row["emulation"]["exit_cause"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "jetson-nano-01" in summary["emulation"]["device_errors"]


def test_htfl_run_local_fleet_applies_profiles_and_records_dilation(tmp_path: Path) -> None:
    exp = tmp_path / "exp.toml"
    exp.write_text(two_device_fedavg("run-emulated", 2, 0.3))
    result = htfl("run", str(exp), "--local-fleet", "2", "--results", str(tmp_path / "r"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = tmp_path / "r" / "run-emulated"
    summary = json.loads((results / "summary.json").read_text())
    assert summary["time_dilation"] >= 1.0
    assert summary["emulation"]["applied"]["link"].startswith("relay")
    rows = json.loads((results / "devices.json").read_text())
    assert all(r["emulation"]["time_dilation"] == summary["time_dilation"] for r in rows)
    assert not fleet_processes(results)
