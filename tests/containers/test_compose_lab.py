"""The simulated lab in real containers (podman + podman-compose, as CI installs them):
build the image on the locally built Debian base, bring up a SuperLink and 3 devices of 3
classes with `htfl fleet up` (one class from a calibrated profile beside the inventory, with a
long link latency), check that every device reaches the SuperLink through its shaped link
(this kernel has no netem: the lab's `link` relay), run a 3-round experiment with `htfl run`
against it, check every row of rounds.csv and the lab's time dilation in the results, and
check that `htfl fleet down` leaves no container, network or volume.

Needs root (rootful podman, debootstrap for the base image) and the Debian packages in
deploy/ci-containers.apt; skipped elsewhere (under CI a skip fails the run)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from htfl.devices import device_class
from htfl.ports import free_port
from htfl.workstation.fleet.base_image import podman_env
from htfl.workstation.fleet.netem import peer_interface
from htfl.workstation.fleet.profiles import plan_fleet
from tests.support.experiments import cnn4_experiment

pytestmark = [pytest.mark.integration, pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]
#: three classes with the largest quotas (quicker rounds on a 2-core CI machine)
DEVICES = {
    "agx-orin-01": "jetson-agx-orin",
    "orin-nano-01": "jetson-orin-nano",
    "xavier-nx-01": "jetson-xavier-nx",
}
ROUNDS = 3
#: the calibrated class's one-way latency (its shipped profile has 0.3 ms)
SLOW_CLASS, SLOW_LATENCY_MS = "jetson-xavier-nx", 25.0

if os.geteuid() != 0 or not (shutil.which("podman-compose") and shutil.which("debootstrap")):
    pytest.skip(
        "needs root, podman, podman-compose and debootstrap (deploy/ci-containers.apt)",
        allow_module_level=True,
    )


def htfl(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "htfl", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def podman(*args: str) -> str:
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, env=podman_env(), timeout=120
    )
    return done.stdout


def project_leftovers(project: str) -> dict[str, list[str]]:
    """Containers, networks and volumes whose names carry the project, as podman lists them."""
    containers = [
        (c.get("Names") or [""])[0]
        for c in json.loads(podman("ps", "-a", "--format", "json") or "[]")
    ]
    return {
        "containers": [c for c in containers if c.startswith(f"{project}-")],
        "networks": [
            n
            for n in podman("network", "ls", "--format", "{{.Name}}").split()
            if n.startswith(f"{project}_")
        ],
        "volumes": [
            v
            for v in podman("volume", "ls", "--format", "{{.Name}}").split()
            if v.startswith(f"{project}_")
        ],
    }


def experiment(port: int) -> str:
    classes = {c: 1 for c in DEVICES.values()}
    return cnn4_experiment(
        "containers", classes, rounds=ROUNDS, deadline_seconds=300, superlink_port=port
    )


@pytest.fixture(scope="module")
def image() -> str:
    from htfl.workstation.fleet.image import IMAGE, build_image

    build_image(IMAGE)  # the local Debian base first when missing; cached layers after
    return IMAGE


def calibrated_inventory(folder: Path) -> Path:
    """sim-lab.yml with a profiles/ folder beside it: SLOW_CLASS's profile, as `htfl
    calibrate` writes it, with a long link latency."""
    inventory = folder / "sim-lab.yml"
    folder.mkdir()
    shutil.copy(REPO / "deploy" / "inventory" / "sim-lab.yml", inventory)
    profile = asdict(device_class(SLOW_CLASS).profile)
    profile["link_latency_ms"] = SLOW_LATENCY_MS
    (folder / "profiles").mkdir()
    (folder / "profiles" / f"{SLOW_CLASS}.yml").write_text(yaml.safe_dump(profile))
    return inventory


def rtt_ms(project: str, address: str) -> float:
    """The shortest of 20 round trips from inside the lab's link container to ``address``
    (the SuperLink's HTTP API, directly or through a device's relay port): the least a
    request waits, what the link adds and not what a busy host adds to some of them."""
    code = (
        "from htfl.device.calibrate import superlink_rtts; "
        f"r, lost = superlink_rtts({address!r}, 20); print(min(r) * 1e3)"
    )
    out = podman("exec", f"{project}-link", "python", "-c", code)
    return float(out.strip().splitlines()[-1])


def cpu_limits(pid: int) -> tuple[int, int]:
    """(quota, period) in µs of the CPU cgroup process ``pid`` runs in (v1 or v2)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            group = Path("/sys/fs/cgroup/cpu" + path)
            quota = int((group / "cpu.cfs_quota_us").read_text())
            return quota, int((group / "cpu.cfs_period_us").read_text())
    path = Path(f"/proc/{pid}/cgroup").read_text().split("::", 1)[1].strip()
    quota_s, period_s = (Path("/sys/fs/cgroup" + path) / "cpu.max").read_text().split()
    return int(quota_s), int(period_s)


def established_ports(project: str) -> set[int]:
    """Local ports of the link container's established IPv4 TCP connections."""
    table = podman("exec", f"{project}-link", "cat", "/proc/net/tcp")
    ports = set()
    for line in table.splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "01":
            ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.timeout(1800)  # the image build, 3 rounds at dilation 4 on a loaded 2-core host
def test_three_devices_in_containers_run_an_experiment_and_leave_nothing(image, tmp_path):
    from htfl.workstation.fleet.compose import LINK_BASE_PORT

    project = f"htfl-ci{os.getpid()}"
    port = free_port()
    results = tmp_path / "results"
    inventory = calibrated_inventory(tmp_path / "inventory")
    try:
        up = htfl(
            "fleet",
            "up",
            "--engine",
            "compose",
            "--project",
            project,
            "--inventory",
            str(inventory),
            "--limit",
            ",".join(DEVICES),
            "--port",
            str(port),
            "--results",
            str(results),
            "--timeout",
            "600",
        )
        assert up.returncode == 0, up.stdout + up.stderr
        status = htfl("fleet", "status", "--project", project)
        assert status.returncode == 0, status.stdout + status.stderr
        for name in DEVICES:
            assert f"{project}-{name}" in status.stdout
        # each class's quota and cap reached its container
        plan = plan_fleet(list(DEVICES.items()))
        for name, cls in DEVICES.items():
            config = json.loads(podman("inspect", f"{project}-{name}"))[0]["HostConfig"]
            cores = config["CpuQuota"] / config["CpuPeriod"]
            assert cores == pytest.approx(plan.device(name).cpu_cores, abs=0.002), name
            # the period follows the quota (equal bursts between throttles for every class):
            # set after start (podman update), so read from the container's cgroup (podman 4.3's
            # inspect keeps the period it was created with)
            limits = plan.device(name)
            got = cpu_limits(
                int(podman("inspect", "--format", "{{.State.Pid}}", f"{project}-{name}"))
            )
            assert got == (limits.cpu_quota_us, limits.cpu_period_us), name
            assert config["Memory"] == device_class(cls).profile.memory_mb * 2**20, name

        # links: each device dials its own port of the link relay (no netem here), which
        # delays by its class's latency each way: the calibrated class's 25 ms shows
        assert "links: relay" in up.stdout, up.stdout
        written = yaml.safe_load((REPO / "build" / "fleet" / project / "compose.yml").read_text())
        ports = {}
        for name in DEVICES:
            cmd = written["services"][name]["command"]
            host, _, dial = cmd[cmd.index("--superlink") + 1].partition(":")
            assert host == "link" and int(dial) >= LINK_BASE_PORT, cmd
            ports[name] = int(dial)
        direct = rtt_ms(project, "superlink:8000")
        slow = next(n for n, c in DEVICES.items() if c == SLOW_CLASS)
        shaped = rtt_ms(project, f"127.0.0.1:{ports[slow]}")
        assert shaped >= 2 * SLOW_LATENCY_MS * 0.95, (shaped, direct)
        assert direct < 2 * SLOW_LATENCY_MS * 0.95, (shaped, direct)
        deadline = time.monotonic() + 120  # every agent's SuperNode talks through its port
        while not set(ports.values()) <= (seen := established_ports(project)):
            assert time.monotonic() < deadline, (ports, seen)
            time.sleep(1.0)
        # the kernel paces each device's bandwidth: htb classes on the link container's eth0
        # (downloads, from its port) and on the host's end of its veth (uploads, to its port)
        link_pid = int(podman("inspect", "--format", "{{.State.Pid}}", f"{project}-link"))
        peer = peer_interface(link_pid)
        assert "links: relay, bandwidth: kernel htb" in up.stdout, up.stdout
        for argv, direction in (
            (["nsenter", "-t", str(link_pid), "-n", "tc", "filter", "show", "dev", "eth0"], 0),
            (["tc", "filter", "show", "dev", peer], 1),
        ):
            shown = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            # u32 shows the port as hex: sport in the high half, dport in the low half
            matched = {int(m, 16) for m in re.findall(r"match ([0-9a-f]{8})/", shown)}
            want = {p << 16 if direction == 0 else p for p in ports.values()}
            assert want <= matched, (argv, shown)

        exp = tmp_path / "containers.toml"
        exp.write_text(experiment(port))
        run = htfl("run", str(exp), "--results", str(results), "--timeout", "900", timeout=1000)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

        out = results / "containers"
        summary = json.loads((out / "summary.json").read_text())
        assert summary["status"] == "finished", summary
        # the lab's time dilation and each device's limits are in the run's record
        assert summary["time_dilation"] == pytest.approx(plan.time_dilation)
        assert summary["emulation"]["engine"] == "compose"
        assert summary["emulation"]["applied"]["link"].startswith("relay")
        assert "bandwidth: kernel htb" in summary["emulation"]["applied"]["link"]
        for row in json.loads((out / "devices.json").read_text()):
            limits = row["emulation"]
            assert limits["time_dilation"] == pytest.approx(plan.time_dilation), row["device"]
            assert limits["cpu_cores"] == pytest.approx(plan.device(row["device"]).cpu_cores,
                                                        abs=1e-3)  # fmt: skip
        slow_link = json.loads((out / "devices.json").read_text())
        assert {r["device"]: r["emulation"]["link"]["latency_s"] for r in slow_link}[slow] == (
            SLOW_LATENCY_MS / 1e3
        )
        with open(out / "rounds.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert sorted((int(r["round"]), r["device"]) for r in rows) == sorted(
            (rnd, name) for rnd in range(1, ROUNDS + 1) for name in DEVICES
        )
        for row in rows:
            where = f"round {row['round']} {row['device']}"
            assert row["status"] == "ok", (where, row["error"])
            assert row["device_class"] == DEVICES[row["device"]], where
            assert float(row["train_seconds"]) > 0, where
            assert int(row["bytes_up"]) > 0 and int(row["bytes_down"]) > 0, where
            assert float(row["train_loss"]) > 0, where
            if int(row["round"]) == ROUNDS:
                assert 0.0 <= float(row["test_accuracy"]) <= 1.0, where
    finally:
        down = htfl("fleet", "down", "--project", project)
    assert down.returncode == 0, down.stdout + down.stderr
    assert project_leftovers(project) == {"containers": [], "networks": [], "volumes": []}
    # the htb classes went with the link container's interfaces
    assert not (Path("/sys/class/net") / peer).exists()


def test_a_device_whose_container_exits_is_named_and_the_lab_taken_down(image, tmp_path):
    """A memory cap far below what the agent needs (an 8 MB 'Jetson Nano'): the container is
    killed while the agent starts, `up` fails naming the device, and nothing is left."""
    from htfl.workstation.fleet.compose import ComposeOptions
    from htfl.workstation.fleet.containers import ComposeFleet, FleetError
    from htfl.workstation.fleet.profiles import with_overrides
    from htfl.workstation.inventory import load_inventory

    project = f"htfl-ci{os.getpid()}x"
    hosts = load_inventory(REPO / "deploy" / "inventory" / "sim-lab.yml").of_class("jetson-nano")
    tiny = with_overrides(device_class("jetson-nano").profile, memory_mb=8)
    plan = plan_fleet([(hosts[0].name, "jetson-nano")], profiles={"jetson-nano": tiny})
    fleet = ComposeFleet(
        tmp_path / project,
        ComposeOptions(
            project=project,
            port=free_port(),
            results_dir=str(tmp_path / "r"),
            repo=str(REPO),
            config_dir=str(tmp_path / project),
            monitoring="off",
        ),
    )
    start = time.monotonic()
    with pytest.raises(FleetError, match=f"device {hosts[0].name}: container {project}-"):
        fleet.up(hosts[:1], plan, timeout=300)
    assert time.monotonic() - start < 300
    assert project_leftovers(project) == {"containers": [], "networks": [], "volumes": []}
