"""What the local fleet's emulation records, and what it does where cgroups cannot be made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from htfl.workstation.fleet import htb
from htfl.workstation.fleet.emulation import (
    EMULATION_FILE,
    Emulation,
    lab_for,
    plan_record,
    record_in_results,
    write_lab,
)
from htfl.workstation.fleet.profiles import inventory_profiles, plan_fleet


def test_without_cgroups_the_record_says_why_and_links_are_still_shaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as for a user who is not root: no tc qdiscs either (the real htb is tests/fleet/test_htb.py)
    monkeypatch.setattr(htb, "unavailable_reason", lambda: "tc qdiscs need root")
    plan = plan_fleet([("nano-1", "jetson-nano"), ("pi-1", "orange-pi-5b")], cores=2)
    emulation = Emulation(plan, cgroup_root=tmp_path / "no-cgroups")
    emulation.prepare()
    assert emulation.applied["cpu"].startswith("not applied: no cgroup v1 or v2")
    assert emulation.wrap("nano-1", ["agent"]) == ["agent"]
    assert emulation.applied["link"].startswith("relay")
    # the relay paces the bandwidth itself, and the record says why
    assert emulation.applied["link"].endswith("bandwidth: paced by the relay (tc qdiscs need root)")
    assert emulation.shaper is None
    port = emulation.relay_ports["nano-1"]
    assert emulation.superlink_for("nano-1", "127.0.0.1:9000") == f"127.0.0.1:{port}"
    argv = emulation.relay_argv("127.0.0.1:9000", tmp_path)
    assert argv is not None and argv[-1] == str(tmp_path / "relay.json")
    spec = json.loads((tmp_path / "relay.json").read_text())
    assert spec["upstream"] == "127.0.0.1:9000"
    assert {d["name"]: d["port"] for d in spec["devices"]} == emulation.relay_ports
    assert all(d["pace"] for d in spec["devices"])
    assert emulation.exit_cause("nano-1") is None


def test_record_in_results_adds_dilation_and_limits(tmp_path: Path) -> None:
    plan = plan_fleet([("nano-1", "jetson-nano"), ("pi-1", "orange-pi-5b")], cores=2)
    emulation = Emulation(plan, shape_links=False, cgroup_root=tmp_path / "none")
    emulation.prepare()
    (tmp_path / "summary.json").write_text(json.dumps({"status": "finished"}))
    (tmp_path / "devices.json").write_text(json.dumps([{"device": "pi-1"}, {"device": "x"}]))
    record_in_results(tmp_path, emulation)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["time_dilation"] == plan.time_dilation > 1
    assert summary["emulation"]["applied"]["link"] == "not applied: link shaping turned off"
    rows = json.loads((tmp_path / "devices.json").read_text())
    assert rows[0]["emulation"]["cpu_cores"] == round(plan.device("pi-1").cpu_cores, 4)
    assert "emulation" not in rows[1]  # a device the fleet did not start
    assert json.loads((tmp_path / EMULATION_FILE).read_text())["devices"].keys() == {
        "nano-1",
        "pi-1",
    }


def test_htfl_run_refuses_a_fleet_the_host_cannot_give_before_starting_it(tmp_path: Path) -> None:
    """400 simulated Jetson Nanos on this host: each quota would be below the kernel's minimum;
    exit 2 with one line naming a device, and no results directory, no fleet."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    exp = tmp_path / "exp.toml"
    text = (repo / "experiments" / "quickstart.toml").read_text()
    exp.write_text(text.replace('id = "quickstart"', 'id = "too-many"'))
    proc = subprocess.run(
        [sys.executable, "-m", "htfl", "run", str(exp), "--local-fleet", "1000"]
        + ["--results", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "error: device jetson-nano-01 (jetson-nano): its CPU quota would be" in out, out
    assert "Traceback" not in out
    assert not (tmp_path / "r").exists()


def test_a_run_against_a_lab_records_the_labs_dilation(tmp_path: Path) -> None:
    """`htfl fleet up` leaves lab.json; a run whose SuperLink is the lab's finds it (and only
    then) and records its dilation and limits as a local fleet's are recorded."""
    plan = plan_fleet([("nano-1", "jetson-nano"), ("pi-1", "orange-pi-5b")], cores=1)
    applied = {"cpu": "compose cpus", "memory": "compose mem_limit", "link": "relay"}
    labs = tmp_path / "fleet"
    write_lab(
        labs / "lab1",
        "compose",
        "127.0.0.1:9311",
        {"engine": "compose", **plan_record(plan, applied)},
    )
    assert lab_for("127.0.0.1:9312", labs) is None
    assert lab_for("10.0.0.5:9311", labs) is None
    lab = lab_for("localhost:9311", labs)
    assert lab is not None and lab["engine"] == "compose"
    results = tmp_path / "results"
    results.mkdir()
    (results / "summary.json").write_text(json.dumps({"status": "finished"}))
    (results / "devices.json").write_text(json.dumps([{"device": "nano-1"}]))
    record_in_results(results, lab)
    summary = json.loads((results / "summary.json").read_text())
    assert summary["time_dilation"] == plan.time_dilation > 1
    assert summary["emulation"]["engine"] == "compose"
    assert summary["emulation"]["applied"] == applied
    (row,) = json.loads((results / "devices.json").read_text())
    assert row["emulation"]["time_dilation"] == plan.time_dilation
    assert row["emulation"]["cpu_cores"] == round(plan.device("nano-1").cpu_cores, 4)


def test_calibrated_profiles_beside_the_inventory_replace_the_shipped_ones(tmp_path: Path) -> None:
    inventory = tmp_path / "lab.yml"
    inventory.write_text("all: {}\n")
    assert inventory_profiles(inventory) == {}
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "jetson-nano.yml").write_text(
        "relative_speed: 0.3\nmemory_mb: 3956\nlink_mbit_s: 94\nlink_latency_ms: 0.4\n"
        "idle_watts: 1.5\nbusy_watts: 7\ncalibration: {host: nano-01}\n"
    )
    profiles = inventory_profiles(inventory)
    assert profiles["jetson-nano"].relative_speed == 0.3
    plan = plan_fleet([("n", "jetson-nano"), ("p", "orange-pi-5b")], cores=2, profiles=profiles)
    assert plan.device("n").relative_speed == 0.3 and plan.device("n").memory_bytes == 3956 * 2**20


def test_netem_commands_for_a_container_link() -> None:
    """What `htfl fleet up` runs where the kernel has netem (not this one): the profile's
    rate, delay with jitter and loss, and the host's veth end found from the container's."""
    from htfl.workstation.fleet.netem import netem_command, peer_index
    from htfl.workstation.fleet.profiles import LinkShape

    cmd = netem_command(LinkShape(100e6, 0.02, 0.005, 0.001), "eth0")
    assert cmd[:7] == ["tc", "qdisc", "replace", "dev", "eth0", "root", "netem"]
    assert cmd[7:] == ["rate", "100000kbit", "delay", "20.000ms", "5.000ms", "loss", "0.1000%"]
    line = "3: eth0@if12: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP"
    assert peer_index(line) == 12
    with pytest.raises(RuntimeError, match="not one end of a veth pair"):
        peer_index("1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536")
