"""The inventory contract: device class, address, meter and exporter port per host."""

from __future__ import annotations

from pathlib import Path

import pytest

from htfl.devices import DEVICE_CLASSES
from htfl.workstation.inventory import Host, InventoryError, load_inventory, write_local_inventory

INVENTORY = """
all:
  vars:
    htfl_superlink: "10.0.0.100:8000"
  children:
    server:
      hosts:
        workstation: {ansible_host: 10.0.0.100}
    jetson_nano:
      vars: {htfl_device_class: jetson-nano}
      hosts:
        nano-01: {ansible_host: 10.0.0.21, htfl_meter: {driver: um25c, port: /dev/rfcomm0}}
        nano-02: {ansible_host: 10.0.0.22}
    orange_pi_5b:
      vars: {htfl_device_class: orange-pi-5b}
      hosts:
        opi-01: {ansible_host: 10.0.0.31, htfl_exporter_port: 9500}
"""


def test_yaml_inventory_reads_devices_and_skips_the_server(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(INVENTORY)
    inv = load_inventory(path, use_ansible=False)
    assert [h.name for h in inv.hosts] == ["nano-01", "nano-02", "opi-01"]
    assert inv.superlink == "10.0.0.100:8000"
    nano = inv.by_name("nano-01")
    assert (nano.device_class, nano.address) == ("jetson-nano", "10.0.0.21")
    assert nano.meter == {"driver": "um25c", "port": "/dev/rfcomm0"}
    assert inv.by_name("opi-01").exporter_port == 9500
    assert len(inv.of_class("jetson-nano")) == 2


def test_unknown_class_names_file_and_host(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(INVENTORY.replace("htfl_device_class: orange-pi-5b", "htfl_device_class: pi"))
    with pytest.raises(InventoryError) as info:
        load_inventory(path, use_ansible=False)
    assert str(path) in str(info.value)
    assert info.value.problems == [
        "host opi-01: htfl_device_class: unknown device class 'pi'; known: "
        + ", ".join(sorted(DEVICE_CLASSES))
    ]


def test_every_bad_host_variable_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    bad = (
        INVENTORY.replace("htfl_exporter_port: 9500", "htfl_exporter_port: 70000")
        .replace("port: /dev/rfcomm0}", "prot: /dev/rfcomm0}")
        .replace("nano-02: {ansible_host: 10.0.0.22}", "nano-02: {ansible_host: 22, htfl_meter: 1}")
    )
    path.write_text(bad)
    with pytest.raises(InventoryError) as info:
        load_inventory(path, use_ansible=False)
    assert info.value.problems == [
        "host nano-01: htfl_meter.port: missing (required by driver 'um25c')",
        "host nano-01: htfl_meter.prot: unknown key for driver 'um25c' (expected one of: "
        "baudrate, interval, port, source, timeout)",
        "host nano-02: ansible_host: expected a string, got 22",
        "host nano-02: htfl_meter: expected a table, got 1",
        "host opi-01: htfl_exporter_port: expected a port number (1..65535), got 70000",
    ]
    assert str(info.value).splitlines()[0] == f"invalid inventory {path}:"


def test_an_exporter_port_given_as_text_is_a_number(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(INVENTORY.replace("htfl_exporter_port: 9500", 'htfl_exporter_port: "9500"'))
    assert load_inventory(path, use_ansible=False).by_name("opi-01").exporter_port == 9500


def test_local_inventory_round_trips(tmp_path: Path) -> None:
    meter = {"driver": "simulated", "idle_watts": 2.0, "busy_watts": 5.0}
    hosts = [Host("nano-01", "jetson-nano", "127.0.0.1", meter, 9601)]
    path = write_local_inventory(tmp_path / "local.yml", hosts, "127.0.0.1:8000")
    inv = load_inventory(path, use_ansible=False)
    assert inv.hosts[0].name == "nano-01" and inv.hosts[0].meter == meter
    assert inv.hosts[0].exporter_port == 9601 and inv.superlink == "127.0.0.1:8000"
    assert inv.hosts[0].address == "127.0.0.1"


def _nano_problems(path: Path, host_var: str) -> list[str]:
    """The inventory's problems once both Jetson Nanos get ``host_var`` (``key: value``)."""
    path.write_text(
        INVENTORY.replace(
            "{htfl_device_class: jetson-nano}",
            f"{{htfl_device_class: jetson-nano, {host_var}}}",
        )
    )
    with pytest.raises(InventoryError) as info:
        load_inventory(path, use_ansible=False)
    return info.value.problems


def test_a_training_device_other_than_auto_cpu_cuda_names_the_host(tmp_path: Path) -> None:
    problems = _nano_problems(tmp_path / "inv.yml", "htfl_training_device: gpu")
    assert [p.split(":")[:2] for p in problems] == [
        ["host nano-01", " htfl_training_device"],
        ["host nano-02", " htfl_training_device"],
    ]
    assert all("'gpu'" in p for p in problems)


def test_a_trainer_python_that_is_not_an_absolute_path_names_the_host(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    problems = _nano_problems(path, "htfl_trainer_python: python3.10")
    assert [p.split(":")[:2] for p in problems] == [
        ["host nano-01", " htfl_trainer_python"],
        ["host nano-02", " htfl_trainer_python"],
    ]
    assert all("absolute path" in p for p in problems)
    path.write_text(path.read_text().replace("python3.10", "/usr/bin/python3.10"))
    assert len(load_inventory(path, use_ansible=False).hosts) == 3  # two nanos, one Orange Pi
