"""What the local fleet's emulation records, and what it does where cgroups cannot be made."""

from __future__ import annotations

import json
from pathlib import Path

from htfl.workstation.fleet.emulation import EMULATION_FILE, Emulation, record_in_results
from htfl.workstation.fleet.profiles import plan_fleet


def test_without_cgroups_the_record_says_why_and_links_are_still_shaped(tmp_path: Path) -> None:
    plan = plan_fleet([("nano-1", "jetson-nano"), ("pi-1", "orange-pi-5b")], cores=2)
    emulation = Emulation(plan, cgroup_root=tmp_path / "no-cgroups")
    emulation.prepare()
    assert emulation.applied["cpu"].startswith("not applied: no cgroup v1 or v2")
    assert emulation.wrap("nano-1", ["agent"]) == ["agent"]
    assert emulation.applied["link"].startswith("relay")
    port = emulation.relay_ports["nano-1"]
    assert emulation.superlink_for("nano-1", "127.0.0.1:9000") == f"127.0.0.1:{port}"
    argv = emulation.relay_argv("127.0.0.1:9000", tmp_path)
    assert argv is not None and argv[-1] == str(tmp_path / "relay.json")
    spec = json.loads((tmp_path / "relay.json").read_text())
    assert spec["upstream"] == "127.0.0.1:9000"
    assert {d["name"]: d["port"] for d in spec["devices"]} == emulation.relay_ports
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
