"""The compose file written from an inventory, the repository's docker-compose.yml, the
simulated lab's inventory and `htfl fleet`'s errors (no containers started here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from htfl.devices import DEVICE_CLASSES, device_class
from htfl.workstation.fleet.compose import (
    ComposeOptions,
    LimitError,
    compose_document,
    reference_files,
    select_hosts,
)
from htfl.workstation.fleet.profiles import plan_fleet
from htfl.workstation.inventory import load_inventory

REPO = Path(__file__).resolve().parents[2]
SIM_LAB = REPO / "deploy" / "inventory" / "sim-lab.yml"


@pytest.fixture(scope="module")
def lab():
    return load_inventory(SIM_LAB, use_ansible=False)


def test_sim_lab_is_the_reference_lab_simulated(lab):
    testbed = load_inventory(REPO / "deploy" / "inventory" / "testbed.yml", use_ansible=False)
    assert {h.name: h.device_class for h in lab.hosts} == {
        h.name: h.device_class for h in testbed.hosts
    }
    boards = [h for h in lab.hosts if h.device_class != "android-phone"]
    assert len(boards) == 28
    assert all(h.address == "127.0.0.1" and h.meter["driver"] == "simulated" for h in lab.hosts)


def test_the_repository_compose_file_is_current():
    """docker-compose.yml and its monitoring files are what the generator writes now
    (regenerate: python -m htfl.workstation.fleet.compose)."""
    for rel, text in reference_files(REPO).items():
        assert (REPO / rel).read_text() == text, f"{rel} is stale"


def test_limit_by_count_takes_classes_in_turn(lab):
    hosts = select_hosts(lab, "3")
    assert len({h.device_class for h in hosts}) == 3
    assert len({h.device_class for h in select_hosts(lab, "7")}) == len(DEVICE_CLASSES)
    assert len(select_hosts(lab, "28")) == 28
    assert Counter(h.device_class for h in select_hosts(lab, "jetson-nano,panda-01")) == {
        "jetson-nano": 6,
        "lattepanda-delta-3": 1,
    }


@pytest.mark.parametrize("limit", ["0", "49", "jetson-nanoo", "nano-01,nosuch"])
def test_a_limit_that_selects_nothing_is_an_error_naming_it(lab, limit):
    with pytest.raises(LimitError, match="--limit"):
        select_hosts(lab, limit)


def test_each_device_is_an_agent_of_its_class_under_its_profile(lab):
    hosts = select_hosts(lab, "7")
    plan = plan_fleet([(h.name, h.device_class) for h in hosts], cores=2.0)
    doc = compose_document(hosts, plan, ComposeOptions(monitoring="off"))
    services = doc["services"]
    assert set(services) == {"superlink", "link", *(h.name for h in hosts)}
    relay = services["link"]["command"]
    assert relay[:3] == ["python", "-m", "htfl.workstation.fleet.relay"]
    spec = json.loads(relay[relay.index("--spec-json") + 1])
    assert spec["upstream"] == "superlink:8000" and spec["host"] == "0.0.0.0"
    relay_ports = {d["name"]: d["port"] for d in spec["devices"]}
    speeds = {}
    for host in hosts:
        svc = services[host.name]
        cmd = svc["command"]
        assert cmd[:2] == ["htfl", "agent"]
        assert cmd[cmd.index("--device-class") + 1] == host.device_class
        assert cmd[cmd.index("--name") + 1] == host.name
        # each device dials its own port of the link relay, which has the class's link
        assert cmd[cmd.index("--superlink") + 1] == f"link:{relay_ports[host.name]}"
        profile = device_class(host.device_class).profile
        (link,) = [d["link"] for d in spec["devices"] if d["name"] == host.name]
        assert link == {
            "bandwidth_bit_s": profile.link_mbit_s * 1e6,
            "latency_s": profile.link_latency_ms / 1e3,
            "jitter_s": profile.link_jitter_ms / 1e3,
            "loss": profile.link_loss,
        }
        assert svc["mem_limit"] == f"{profile.memory_mb}m"
        speeds[host.name] = svc["cpus"] / profile.relative_speed
    # one dilation for all: every quota is the class's relative speed over the same factor
    assert max(speeds.values()) == pytest.approx(min(speeds.values()), rel=0.01)
    assert sum(services[h.name]["cpus"] for h in hosts) <= 2.0 + 1e-6
    assert doc["x-htfl"]["time_dilation"] == pytest.approx(plan.time_dilation, rel=1e-3)
    assert "superlink-state:/var/lib/flwr/state" in services["superlink"]["volumes"]
    assert "cpus" not in services["link"]  # the network waits for no device's CPU
    # the relay paces the bandwidth itself, unless the kernel's htb does (below)
    assert all(d["pace"] for d in spec["devices"])
    htb_doc = compose_document(hosts, plan, ComposeOptions(monitoring="off", bandwidth="htb"))
    relay = htb_doc["services"]["link"]["command"]
    assert not any(d["pace"] for d in json.loads(relay[-1])["devices"])


def test_with_netem_devices_dial_the_superlink_and_no_relay_runs(lab):
    hosts = select_hosts(lab, "2")
    plan = plan_fleet([(h.name, h.device_class) for h in hosts], cores=2.0)
    doc = compose_document(hosts, plan, ComposeOptions(monitoring="off", link="netem"))
    assert "link" not in doc["services"] and doc["x-htfl"]["link"] == "netem"
    for host in hosts:
        cmd = doc["services"][host.name]["command"]
        assert cmd[cmd.index("--superlink") + 1] == "superlink:8000"


def test_monitoring_is_a_profile_in_the_repository_file():
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert doc["services"]["prometheus"]["profiles"] == ["monitoring"]
    assert doc["services"]["grafana"]["profiles"] == ["monitoring"]


def htfl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "htfl", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
    )


def test_fleet_up_without_a_compose_engine_says_what_to_install(tmp_path):
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # no podman, no docker
    done = htfl("fleet", "up", "--limit", "1", "--project", "htfl-none", env=env)
    assert done.returncode == 2
    assert "podman-compose" in done.stderr and "apt-get install" in done.stderr
    assert "Traceback" not in done.stderr


def test_fleet_up_with_an_unknown_device_is_a_usage_error():
    done = htfl("fleet", "up", "--limit", "nano-99", "--project", "htfl-none")
    assert done.returncode == 2
    assert "nano-99" in done.stderr and "Traceback" not in done.stderr
