"""The device-class table: one row per kind of device in the fleet.

Everything that differs by device class lives here or in ``deploy/group_vars/<class>.yml``:
CPU architecture, install recipe, the default model, and the profile a simulated device of
that class follows (relative speed, memory, link, power model).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SimulationProfile:
    relative_speed: float  # training throughput relative to a LattePanda Delta 3 core
    memory_mb: int
    link_mbit_s: float
    link_latency_ms: float  # one way, device -> SuperLink
    idle_watts: float
    busy_watts: float
    link_jitter_ms: float = 0.0  # spread of the one-way latency (uniform within +- jitter)
    link_loss: float = 0.0  # fraction of TCP segments lost (each costs a retransmission wait)


@dataclass(frozen=True)
class DeviceClass:
    name: str
    cpu_arch: str
    install_recipe: str
    default_model: str
    profile: SimulationProfile


DEVICE_CLASSES: dict[str, DeviceClass] = {
    c.name: c
    for c in (
        DeviceClass(
            "jetson-agx-orin",
            "aarch64",
            "jetpack5",
            "resnet18",
            SimulationProfile(4.0, 32768, 1000, 0.3, 15.0, 60.0),
        ),
        DeviceClass(
            "jetson-orin-nano",
            "aarch64",
            "jetpack5",
            "resnet10",
            SimulationProfile(2.0, 8192, 1000, 0.3, 7.0, 15.0),
        ),
        DeviceClass(
            "jetson-xavier-nx",
            "aarch64",
            "jetpack5",
            "resnet8",
            SimulationProfile(1.5, 8192, 1000, 0.3, 5.0, 15.0),
        ),
        DeviceClass(
            "jetson-nano",
            "aarch64",
            "jetpack4-miniforge",
            "cnn4",
            SimulationProfile(0.5, 4096, 100, 0.5, 2.0, 10.0),
        ),
        DeviceClass(
            "lattepanda-delta-3",
            "x86_64",
            "debian-x86",
            "mobilenet_v2",
            SimulationProfile(1.0, 8192, 1000, 0.3, 4.0, 12.0),
        ),
        DeviceClass(
            "orange-pi-5b",
            "aarch64",
            "debian-arm64",
            "resnet8",
            SimulationProfile(1.2, 8192, 1000, 0.3, 3.0, 10.0),
        ),
        DeviceClass(
            "android-phone",
            "aarch64",
            "termux",
            "cnn4",
            # over Wi-Fi: latency, jitter and loss of a phone on the lab's access point
            SimulationProfile(0.8, 8192, 100, 20.0, 0.5, 5.0, link_jitter_ms=5.0, link_loss=0.001),
        ),
    )
}


class UnknownDeviceClassError(ValueError):
    pass


def device_class(name: str) -> DeviceClass:
    try:
        return DEVICE_CLASSES[name]
    except KeyError:
        known = ", ".join(sorted(DEVICE_CLASSES))
        raise UnknownDeviceClassError(
            f"unknown device class {name!r}; known classes: {known}"
        ) from None
