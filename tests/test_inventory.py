"""The inventory contract: device class, address, meter and exporter port per host."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    with pytest.raises(InventoryError, match="opi-01.*'pi' is unknown"):
        load_inventory(path, use_ansible=False)


def test_local_inventory_round_trips(tmp_path: Path) -> None:
    hosts = [Host("nano-01", "jetson-nano", "127.0.0.1", {"driver": "simulated"}, 9601)]
    path = write_local_inventory(tmp_path / "local.yml", hosts, "127.0.0.1:8000")
    inv = load_inventory(path, use_ansible=False)
    assert inv.hosts[0].name == "nano-01" and inv.hosts[0].meter == {"driver": "simulated"}
    assert inv.hosts[0].exporter_port == 9601 and inv.superlink == "127.0.0.1:8000"
    assert inv.hosts[0].address == "127.0.0.1"
