"""The device-class table: one row per kind of device in the fleet.

Everything that differs by device class lives here or in ``deploy/group_vars/<class>.yml``:
CPU architecture, install recipe, the default model, and the profile a simulated device of
that class follows (relative speed, memory, link, power model).

Every shipped profile number has its source in :data:`PROFILE_SOURCES`: the published figure
it comes from (vendor data sheets and spec pages, by document and version), how it was derived
from it, or that it is an estimate. A class calibrated on a real board (``htfl calibrate``,
``profiles/<class>.yml`` beside the inventory) replaces its shipped profile.
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


@dataclass(frozen=True)
class Source:
    """Where one shipped profile number comes from.

    ``kind``: ``published`` (the number is the document's), ``derived`` (computed from
    published figures, as ``how`` says) or ``estimate`` (no published figure gives it; ``how``
    says what it rests on). Values recalled from a document rather than re-read while writing
    this table say so in ``how``."""

    kind: str
    document: str
    how: str


# Documents, by the names and numbers their publishers give them. The figures, document numbers
# and versions were written from the authors' knowledge of these documents, without re-reading
# them (no web access where this table was written): a reviewer should check them against the
# current editions, and a calibration on a real board supersedes them anyway.
_AGX_ORIN_DS = "NVIDIA Jetson AGX Orin Series Data Sheet (DS-10662-001)"
_ORIN_NANO_DS = "NVIDIA Jetson Orin Nano Series Data Sheet (DS-11105-001)"
_XAVIER_NX_DS = "NVIDIA Jetson Xavier NX Series Data Sheet (DS-09693-001, number not re-checked)"
_NANO_DS = "NVIDIA Jetson Nano Data Sheet (DS-09366-001)"
_NANO_DEVKIT = "NVIDIA Jetson Nano Developer Kit User Guide (B01 carrier board)"
_PANDA = "LattePanda Delta 3 specifications, docs.lattepanda.com (LattePanda Delta 3 page)"
_N5105 = "Intel ARK: Intel Celeron Processor N5105 (4M cache, up to 2.90 GHz), product 212328"
_OPI5B = "Orange Pi 5B product page and user manual (orangepi.org, Orange Pi 5B, manual v1.1)"
_RK3588S = "Rockchip RK3588S Datasheet (Rockchip; revision not re-checked)"
_GB5 = "Geekbench 5 Browser (browser.geekbench.com), CPU single-core results"
_LAB = "this project's lab setup (no published figure)"

_WIRED_LATENCY = Source(
    "estimate",
    _LAB,
    "one-way latency of a wired device through one Gigabit switch to the workstation "
    "(0.1-0.5 ms is usual for a switched LAN); calibrate to replace",
)
_REFERENCE_SPEED = Source(
    "published",
    _N5105,
    "the unit: relative speeds are training throughput per core relative to one core of "
    "the LattePanda Delta 3's Celeron N5105 (4 cores, 2.0 GHz base, 2.9 GHz burst)",
)


def _speed_estimate(published: str, document: str) -> Source:
    return Source(
        "estimate",
        document,
        f"{published}; the factor is the project's estimate of one-thread CPU training "
        f"throughput against the N5105 core ({_GB5}: single-core ratios, values recalled, "
        "not re-read); no published training benchmark gives it. htfl calibrate replaces it",
    )


#: For each class and profile field, where the shipped number comes from.
PROFILE_SOURCES: dict[str, dict[str, Source]] = {
    "jetson-agx-orin": {
        "relative_speed": _speed_estimate(
            "12 Arm Cortex-A78AE cores at up to 2.2 GHz (64 GB module; 8 cores on the 32 GB "
            "one) and a 1792-2048-core Ampere GPU rated 200-275 sparse INT8 TOPS",
            _AGX_ORIN_DS,
        ),
        "memory_mb": Source("published", _AGX_ORIN_DS, "32 GB 256-bit LPDDR5 (32 GB module)"),
        "link_mbit_s": Source(
            "derived",
            _AGX_ORIN_DS,
            "the module's Gigabit Ethernet (1 GbE RGMII; the developer kit also has 10 GbE, "
            "but the lab's switch is Gigabit)",
        ),
        "link_latency_ms": _WIRED_LATENCY,
        "link_jitter_ms": Source("estimate", _LAB, "a wired LAN: no jitter modelled"),
        "link_loss": Source("estimate", _LAB, "a wired LAN: no loss modelled"),
        "idle_watts": Source(
            "derived",
            _AGX_ORIN_DS,
            "the lowest configurable module power budget (15 W mode); a budget, not a "
            "measured idle draw, so it overstates idle",
        ),
        "busy_watts": Source(
            "derived",
            _AGX_ORIN_DS,
            "maximum module power, up to 60 W, of the 64 GB module (the 32 GB module whose "
            "memory this profile has is rated up to 40 W): an upper bound",
        ),
    },
    "jetson-orin-nano": {
        "relative_speed": _speed_estimate(
            "6 Arm Cortex-A78AE cores at up to 1.5 GHz and a 1024-core Ampere GPU rated 40 "
            "sparse INT8 TOPS (8 GB module, before the JetPack 6.1 'Super' clocks)",
            _ORIN_NANO_DS,
        ),
        "memory_mb": Source("published", _ORIN_NANO_DS, "8 GB 128-bit LPDDR5 (8 GB module)"),
        "link_mbit_s": Source(
            "published", _ORIN_NANO_DS, "Gigabit Ethernet (the developer kit's RJ45 port)"
        ),
        "link_latency_ms": _WIRED_LATENCY,
        "link_jitter_ms": Source("estimate", _LAB, "a wired LAN: no jitter modelled"),
        "link_loss": Source("estimate", _LAB, "a wired LAN: no loss modelled"),
        "idle_watts": Source(
            "derived", _ORIN_NANO_DS, "the lowest power mode, 7 W (a budget, not idle draw)"
        ),
        "busy_watts": Source("published", _ORIN_NANO_DS, "the 15 W power mode (8 GB module)"),
    },
    "jetson-xavier-nx": {
        "relative_speed": _speed_estimate(
            "6 NVIDIA Carmel ARMv8.2 cores (1.4 GHz with 6 cores on, 1.9 GHz with 2) and a "
            "384-core Volta GPU with 48 Tensor Cores rated 21 INT8 TOPS",
            _XAVIER_NX_DS,
        ),
        "memory_mb": Source("published", _XAVIER_NX_DS, "8 GB 128-bit LPDDR4x (8 GB module)"),
        "link_mbit_s": Source(
            "published", _XAVIER_NX_DS, "Gigabit Ethernet (the developer kit's RJ45 port)"
        ),
        "link_latency_ms": _WIRED_LATENCY,
        "link_jitter_ms": Source("estimate", _LAB, "a wired LAN: no jitter modelled"),
        "link_loss": Source("estimate", _LAB, "a wired LAN: no loss modelled"),
        "idle_watts": Source(
            "estimate",
            _XAVIER_NX_DS,
            "below the lowest power mode (10 W), which is a budget; the idle draw is not published",
        ),
        "busy_watts": Source("published", _XAVIER_NX_DS, "the 15 W power mode"),
    },
    "jetson-nano": {
        "relative_speed": _speed_estimate(
            "4 Arm Cortex-A57 cores at 1.43 GHz and a 128-core Maxwell GPU rated 472 GFLOPS (FP16)",
            _NANO_DS,
        ),
        "memory_mb": Source("published", _NANO_DS, "4 GB 64-bit LPDDR4"),
        "link_mbit_s": Source(
            "estimate",
            _NANO_DEVKIT,
            "below the developer kit's Gigabit Ethernet: the lab's Nanos are assumed on a "
            "100 Mbit/s link (Fast Ethernet or USB Wi-Fi); calibrate to replace",
        ),
        "link_latency_ms": Source(
            "estimate", _LAB, "a wired device on a slower link than the Gigabit boards"
        ),
        "link_jitter_ms": Source("estimate", _LAB, "a wired LAN: no jitter modelled"),
        "link_loss": Source("estimate", _LAB, "a wired LAN: no loss modelled"),
        "idle_watts": Source(
            "estimate", _NANO_DS, "idle draw is not published (power modes: 5 W and 10 W)"
        ),
        "busy_watts": Source("published", _NANO_DS, "the 10 W power mode (MAXN)"),
    },
    "lattepanda-delta-3": {
        "relative_speed": _REFERENCE_SPEED,
        "memory_mb": Source("published", _PANDA, "8 GB LPDDR4 2933 MHz"),
        "link_mbit_s": Source("published", _PANDA, "Gigabit Ethernet"),
        "link_latency_ms": _WIRED_LATENCY,
        "link_jitter_ms": Source("estimate", _LAB, "a wired LAN: no jitter modelled"),
        "link_loss": Source("estimate", _LAB, "a wired LAN: no loss modelled"),
        "idle_watts": Source("estimate", _PANDA, "idle draw of the board is not published"),
        "busy_watts": Source(
            "derived",
            _N5105,
            "the N5105's 10 W TDP plus an estimated 2 W for memory, storage and Ethernet",
        ),
    },
    "orange-pi-5b": {
        "relative_speed": _speed_estimate(
            "RK3588S: 4 Arm Cortex-A76 cores at up to 2.4 GHz and 4 Cortex-A55 at up to 1.8 "
            "GHz, a Mali-G610 MP4 GPU and a 6 TOPS NPU",
            _RK3588S,
        ),
        "memory_mb": Source(
            "published",
            _OPI5B,
            "8 GB LPDDR4/4x (the board is sold with 4, 8 or 16 GB; the lab's have 8 GB)",
        ),
        "link_mbit_s": Source("published", _OPI5B, "Gigabit Ethernet (plus Wi-Fi 6)"),
        "link_latency_ms": _WIRED_LATENCY,
        "link_jitter_ms": Source("estimate", _LAB, "a wired LAN: no jitter modelled"),
        "link_loss": Source("estimate", _LAB, "a wired LAN: no loss modelled"),
        "idle_watts": Source("estimate", _OPI5B, "idle draw of the board is not published"),
        "busy_watts": Source(
            "estimate",
            _OPI5B,
            "half the recommended 5 V / 4 A (20 W) supply, which bounds the board's peak draw",
        ),
    },
    "android-phone": {
        "relative_speed": _speed_estimate(
            "a mid-range phone SoC (no one model: the lab's phones vary)", _LAB
        ),
        "memory_mb": Source("estimate", _LAB, "a mid-range phone's 8 GB"),
        "link_mbit_s": Source(
            "estimate", _LAB, "usable Wi-Fi throughput of a phone on the lab's access point"
        ),
        "link_latency_ms": Source(
            "estimate",
            _LAB,
            "Wi-Fi with the phone's power saving (802.11 power-save polling adds up to a "
            "beacon interval, 102.4 ms, to a wake-up); 20 ms one way on average",
        ),
        "link_jitter_ms": Source("estimate", _LAB, "Wi-Fi contention and power saving"),
        "link_loss": Source(
            "estimate", _LAB, "residual loss of Wi-Fi after link-layer retries, 0.1 %"
        ),
        "idle_watts": Source("estimate", _LAB, "a phone's screen-off idle draw"),
        "busy_watts": Source("estimate", _LAB, "a phone SoC's sustained CPU load"),
    },
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
