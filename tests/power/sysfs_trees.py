"""Builders for fixture sysfs trees in the real kernel layouts (paths relative to a root)."""

from __future__ import annotations

import os
from pathlib import Path


def write(path: Path, text: str | int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{text}\n")
    return path


def jetson_jp4(root: Path, rails: dict[str, tuple[int, int, int]], bus: str = "6-0040") -> Path:
    """JetPack 4 ``ina3221x`` IIO layout; ``rails`` maps name -> (mW, mV, mA) for channels 0..2.

    Like on a device, the driver directory entry is a symlink into ``/sys/devices``.
    """
    dev = root / "sys/devices/7000c400.i2c/i2c-6" / bus
    iio = dev / "iio:device0"
    for channel, (name, (mw, mv, ma)) in enumerate(rails.items()):
        write(iio / f"rail_name_{channel}", name)
        write(iio / f"in_power{channel}_input", mw)
        write(iio / f"in_voltage{channel}_input", mv)
        write(iio / f"in_current{channel}_input", ma)
        write(iio / f"crit_current_limit_{channel}", 32760)
    write(iio / "name", "ina3221x")
    drivers = root / "sys/bus/i2c/drivers/ina3221x"
    drivers.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(dev, drivers), drivers / bus)
    return iio


def jetson_jp5(
    root: Path,
    rails: dict[str, tuple[int, int]],
    hwmon_index: int = 3,
    bus: str = "1-0040",
) -> Path:
    """JetPack 5+ ``ina3221`` hwmon layout; ``rails`` maps name -> (mV, mA) for channels 1..3."""
    dev = root / "sys/devices/platform/c240000.i2c/i2c-1" / bus
    hwmon = dev / "hwmon" / f"hwmon{hwmon_index}"
    for channel, (name, (mv, ma)) in enumerate(rails.items(), start=1):
        write(hwmon / f"in{channel}_label", name)
        write(hwmon / f"in{channel}_input", mv)
        write(hwmon / f"curr{channel}_input", ma)
        write(hwmon / f"curr{channel}_crit", 4000)
        write(hwmon / f"in{channel + 3}_input", 0)  # shunt voltage channels exist too
    write(hwmon / "name", "ina3221")
    drivers = root / "sys/bus/i2c/drivers/ina3221"
    drivers.mkdir(parents=True, exist_ok=True)
    link = drivers / bus
    if not link.exists():
        os.symlink(os.path.relpath(dev, drivers), link)
    return hwmon


def device_tree_model(root: Path, model: str) -> None:
    path = root / "proc/device-tree/model"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.encode() + b"\x00")


def rapl(root: Path, energy_uj: int, max_uj: int = 262143328850, domain: str = "intel-rapl:0"):
    d = root / "sys/devices/virtual/powercap/intel-rapl" / domain
    write(d / "name", "package-0" if domain.count(":") == 1 else "core")
    write(d / "energy_uj", energy_uj)
    write(d / "max_energy_range_uj", max_uj)
    cls = root / "sys/class/powercap"
    cls.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(d, cls), cls / domain)
    return d


def battery(
    root: Path, voltage_uv: int, current_ua: int, status: str, name: str = "battery"
) -> Path:
    d = root / "sys/class/power_supply" / name
    write(d / "type", "Battery")
    write(d / "voltage_now", voltage_uv)
    write(d / "current_now", current_ua)
    write(d / "status", status)
    return d
