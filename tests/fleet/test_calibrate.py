"""`htfl calibrate` on this machine against a real local SuperLink: it writes the class's
profile beside the inventory, the loader prefers it to the shipped one, a calibrated
reference class makes the others' relative speed a measured one, and bad input is an error
that writes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from htfl.devices import device_class
from htfl.ports import free_port
from htfl.workstation.fleet.profiles import inventory_profiles, plan_fleet
from htfl.workstation.local_fleet import flower_env, start_superlink, stop_process_group

pytestmark = pytest.mark.integration

QUICK = [
    "--architectures", "cnn4", "--batch-sizes", "4,8", "--steps", "2",
    "--input-shape", "1,8,8", "--pings", "8",
]  # fmt: skip


@pytest.fixture
def superlink(tmp_path):
    port = free_port()
    proc = start_superlink(port, tmp_path / "superlink.log", flower_env(tmp_path / "flwr"))
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop_process_group(proc)


def calibrate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "htfl", "calibrate", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_calibrate_writes_the_profile_the_loader_then_uses(superlink, tmp_path: Path) -> None:
    inventory = tmp_path / "lab.yml"
    inventory.write_text("all: {}\n")
    meter = "driver=simulated,idle_watts=2,busy_watts=10,interval=0.05"
    base = ["--superlink", superlink, "--inventory", str(inventory), *QUICK]
    done = calibrate("--device-class", "jetson-nano", *base, "--meter", meter,
                     "--power-seconds", "1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    path = tmp_path / "profiles" / "jetson-nano.yml"
    assert done.stdout.strip() == str(path)
    assert "train step: cnn4, batch 8" in done.stderr  # progress, as it goes
    data = yaml.safe_load(path.read_text())
    cal = data["calibration"]
    assert set(cal["train"]) == {"cnn4/4", "cnn4/8"}
    for figures in cal["train"].values():
        assert figures["step_seconds"] > 0 and figures["samples_per_second"] > 0
    assert len(cal["rtt_ms"]) + cal["pings_lost"] == 8 and min(cal["rtt_ms"]) > 0
    assert data["link_latency_ms"] > 0 and data["link_loss"] == 0
    assert 2 <= data["idle_watts"] <= data["busy_watts"] <= 10
    assert cal["power"] == "measured with simulated"
    # no calibrated reference yet: the shipped relative speed, and the file says so
    assert data["relative_speed"] == device_class("jetson-nano").profile.relative_speed
    assert cal["relative_speed"].startswith("shipped")

    # the loader prefers it: a fleet from this inventory gets the measured memory and link
    profiles = inventory_profiles(inventory)
    plan = plan_fleet([("nano-01", "jetson-nano")], cores=2, profiles=profiles)
    assert plan.device("nano-01").memory_bytes == data["memory_mb"] * 2**20
    assert plan.device("nano-01").link.latency_s == pytest.approx(data["link_latency_ms"] / 1e3)

    # the reference class calibrated: the nano's relative speed becomes a measured ratio
    done = calibrate("--device-class", "lattepanda-delta-3", *base)
    assert done.returncode == 0, done.stderr
    ref = yaml.safe_load((tmp_path / "profiles" / "lattepanda-delta-3.yml").read_text())
    assert ref["relative_speed"] == 1.0 and ref["calibration"]["power"].startswith("shipped")
    done = calibrate("--device-class", "jetson-nano", *base)
    assert done.returncode == 0, done.stderr
    again = yaml.safe_load(path.read_text())
    assert again["calibration"]["relative_speed"].startswith("vs the calibrated lattepanda")
    ratios = [
        ref["calibration"]["train"][k]["step_seconds"] / v["step_seconds"]
        for k, v in again["calibration"]["train"].items()
    ]
    assert min(ratios) * 0.999 <= again["relative_speed"] <= max(ratios) * 1.001


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--device-class", "jetson-nanoo"], 2, "unknown device class 'jetson-nanoo'"),
        (["--device-class", "jetson-nano", "--architectures", "nosuchnet"], 2, "unknown nosuchnet"),
        (["--device-class", "jetson-nano", "--meter", "driver=nosuch"], 2, "--meter"),
        (["--device-class", "jetson-nano", "--superlink", "127.0.0.1:1"], 1,
         "cannot connect to the SuperLink at 127.0.0.1:1"),
    ],
)  # fmt: skip
def test_bad_input_is_an_error_that_writes_nothing(tmp_path, args, status, message) -> None:
    inventory = tmp_path / "lab.yml"
    inventory.write_text("all: {}\n")
    given = dict(zip(args[::2], args[1::2], strict=True))
    argv = [*QUICK, *args, "--inventory", str(inventory)]
    if "--superlink" not in given:
        argv += ["--superlink", f"127.0.0.1:{free_port()}"]
    done = calibrate(*argv)
    assert done.returncode == status, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "profiles").exists()
