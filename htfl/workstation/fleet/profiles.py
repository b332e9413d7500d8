"""Device-class profiles turned into the limits a simulated device runs under.

A profile (``htfl.devices``) says how a class behaves: training speed relative to a LattePanda
Delta 3 core, memory, and its link to the SuperLink. On the workstation a simulated device is a
process (or container) given

* a CPU quota in host cores proportional to its class's relative speed, so step times keep the
  classes' ratios: ``quota = relative_speed / dilation`` host cores;
* a memory cap, the class's memory;
* a shaped link: bandwidth, one-way latency, jitter, loss.

``dilation`` is the one time-dilation factor of the fleet. At 1, a host core stands in for one
reference core. It grows when the quotas would not fit: when they add up to more than the
host's cores less a reserve for the SuperLink, ServerApp and relay (a quarter, at most one),
or when one device's quota would exceed the threads it trains with (a process
with one torch thread cannot use two cores, so a quota above that would not bind and the ratios
would break). Every duration a dilated fleet measures is ``dilation`` times the class's own, so
it is recorded with the run (``devices.json``, ``summary.json``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any

from htfl.devices import SimulationProfile, UnknownDeviceClassError, device_class
from htfl.validation import Number, ValidationError, above, at_least, problem_lines, table, within

#: The kernel's default CFS period (what compose's ``cpus`` and a one-core group use).
CPU_PERIOD_US = 100_000
#: A device runs this long between throttles, whatever its quota: its CFS period is
#: ``CPU_BURST_US / cores`` (within the kernel's 1 ms .. 1 s). Why: each time a throttled
#: process runs again it pays for caches and TLBs others used meanwhile; with one period for
#: all, a 0.068-core device ran 6.8 ms bursts and paid that far more often per unit of work
#: than a 0.545-core one running 54.5 ms bursts, which put the slow classes' measured speed
#: ~20 % below their profile and the fast ones' above. Equal bursts pay it equally, so the
#: classes keep their ratios. The price: a slow device answers up to ``period - burst`` late
#: while throttled (0.7 s for a 0.068-core one), as a busy real board might.
CPU_BURST_US = 50_000
MIN_PERIOD_US = 1_000
MAX_PERIOD_US = 1_000_000
MIN_QUOTA_US = 1_000
#: The smallest quota the kernel can give: 1 ms in its longest period.
MIN_CPU_CORES = MIN_QUOTA_US / MAX_PERIOD_US


def cpu_period_us(cores: float) -> int:
    """The CFS period for a quota of ``cores``: one :data:`CPU_BURST_US` of running per period,
    within the kernel's limits (a tiny quota gets the longest period, and shorter bursts)."""
    return round(min(MAX_PERIOD_US, max(MIN_PERIOD_US, CPU_BURST_US / cores)))


class ProfileError(ValueError):
    """A profile the host cannot give, or a profile file htfl cannot read; names the device."""


@dataclass(frozen=True)
class LinkShape:
    bandwidth_bit_s: float
    latency_s: float  # one way
    jitter_s: float
    loss: float  # fraction of TCP segments lost

    @classmethod
    def of(cls, profile: SimulationProfile) -> LinkShape:
        return cls(
            profile.link_mbit_s * 1e6,
            profile.link_latency_ms / 1e3,
            profile.link_jitter_ms / 1e3,
            profile.link_loss,
        )


@dataclass(frozen=True)
class DeviceLimits:
    name: str
    device_class: str
    cpu_cores: float  # CFS quota, in host cores
    memory_bytes: int
    link: LinkShape
    relative_speed: float

    @property
    def cpu_period_us(self) -> int:
        return cpu_period_us(self.cpu_cores)

    @property
    def cpu_quota_us(self) -> int:
        return max(MIN_QUOTA_US, round(self.cpu_cores * self.cpu_period_us))


@dataclass(frozen=True)
class FleetPlan:
    devices: tuple[DeviceLimits, ...]
    time_dilation: float
    host_cores: float
    host_memory_bytes: int

    def device(self, name: str) -> DeviceLimits:
        for d in self.devices:
            if d.name == name:
                return d
        raise KeyError(name)

    def record(self, name: str, applied: Mapping[str, str] | None = None) -> dict[str, Any]:
        """What one device ran under, as the run's record keeps it (``devices.json``):
        the limits, the fleet's dilation, and per mechanism how it was applied (or why not)."""
        d = self.device(name)
        return {
            "time_dilation": self.time_dilation,
            "relative_speed": d.relative_speed,
            "cpu_cores": round(d.cpu_cores, 4),
            "cpu_period_us": d.cpu_period_us,
            "memory_bytes": d.memory_bytes,
            "memory_binding": d.memory_bytes < self.host_memory_bytes,
            "link": asdict(d.link),
            "applied": dict(applied or {}),
        }


def host_cores() -> float:
    """The cores this process may run on (its affinity, not the machine's count)."""
    return float(len(os.sched_getaffinity(0)))


def host_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def plan_fleet(
    devices: Sequence[tuple[str, str]],
    *,
    cores: float | None = None,
    reserve_cores: float | None = None,
    threads_per_device: int = 1,
    memory_bytes: int | None = None,
    profiles: Mapping[str, SimulationProfile] | None = None,
) -> FleetPlan:
    """Limits for ``devices`` (``(name, device class)`` pairs) on a host with ``cores``.

    ``profiles`` replaces a class's shipped profile (a calibrated one, or a test's).
    Raises :class:`ProfileError` naming the device when its class is unknown or its quota is one
    the kernel cannot give (below 1 ms in its longest period, 1 s: too many devices for the
    host).
    """
    cores = host_cores() if cores is None else cores
    # left to the SuperLink, the ServerApp and the relay: a quarter of the host, at most a core
    reserve = min(1.0, cores / 4) if reserve_cores is None else reserve_cores
    budget = cores - reserve
    memory_bytes = host_memory_bytes() if memory_bytes is None else memory_bytes
    if not devices:
        raise ProfileError("a simulated fleet needs at least one device")
    chosen = []
    for name, cls in devices:
        try:
            profile = (profiles or {}).get(cls) or device_class(cls).profile
        except UnknownDeviceClassError as err:
            raise ProfileError(f"device {name}: {err}") from None
        chosen.append((name, cls, profile))
    speeds = [p.relative_speed for _, _, p in chosen]
    dilation = max(1.0, sum(speeds) / budget, max(speeds) / threads_per_device)
    limits = []
    for name, cls, profile in chosen:
        quota = profile.relative_speed / dilation
        if quota < MIN_CPU_CORES:
            raise ProfileError(
                f"device {name} ({cls}): its CPU quota would be {quota:.4f} cores (relative "
                f"speed {profile.relative_speed:g} / time dilation {dilation:.3g}), below the "
                f"kernel's minimum of {MIN_CPU_CORES:g} cores; this host ({cores:g} cores) "
                f"cannot give it: simulate fewer devices"
            )
        limits.append(
            DeviceLimits(
                name,
                cls,
                quota,
                profile.memory_mb * 1024 * 1024,
                LinkShape.of(profile),
                profile.relative_speed,
            )
        )
    return FleetPlan(tuple(limits), dilation, cores, memory_bytes)


# --- profile files: one class's profile, as `htfl calibrate` writes it ----------------------
@table
class ProfileTable:
    relative_speed: Annotated[Number, above(0)]
    memory_mb: Annotated[Number, above(0)]
    link_mbit_s: Annotated[Number, above(0)]
    link_latency_ms: Annotated[Number, at_least(0)]
    idle_watts: Annotated[Number, at_least(0)]
    busy_watts: Annotated[Number, at_least(0)]
    link_jitter_ms: Annotated[Number, at_least(0)] = 0.0
    link_loss: Annotated[Number, within(0, 1, low_open=False)] = 0.0
    #: what `htfl calibrate` measured (kept with the profile as its evidence; not applied)
    calibration: dict[str, Any] | None = None


def profile_from_mapping(data: Any, where: str) -> SimulationProfile:
    """A class profile from a table (a profile file's); every problem at once, each naming
    ``where`` and the key (an unknown key included), as :class:`ProfileError`."""
    from pydantic import TypeAdapter

    known = [f.name for f in fields(SimulationProfile)] + ["calibration"]
    try:
        parsed = TypeAdapter(ProfileTable).validate_python(data)
    except ValidationError as err:
        raise ProfileError("\n".join(problem_lines(err, where, known=known))) from None
    values = asdict(parsed)
    values.pop("calibration")
    values["memory_mb"] = int(values["memory_mb"])
    return SimulationProfile(**values)


def load_profile_file(path: Path) -> tuple[str, SimulationProfile]:
    """``<class>.yml`` beside an inventory (``profiles/<class>.yml``): the class (from the file
    name, which must be a known class) and its profile."""
    import yaml

    cls = path.stem
    try:
        device_class(cls)
    except UnknownDeviceClassError as err:
        raise ProfileError(f"{path}: {err}") from None
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ProfileError(f"{path}: cannot read the profile: {err}") from None
    return cls, profile_from_mapping(data, str(path))


PROFILES_DIR = "profiles"


def profiles_dir(inventory: Path) -> Path:
    """Where calibrated profiles live: ``profiles/`` beside the inventory file."""
    return inventory.parent / PROFILES_DIR


def inventory_profiles(inventory: Path) -> dict[str, SimulationProfile]:
    """The calibrated profiles beside ``inventory`` (``profiles/<class>.yml``), by class: a
    fleet from that inventory uses them instead of the shipped ones (``htfl fleet up``)."""
    folder = profiles_dir(inventory)
    if not folder.is_dir():
        return {}
    return dict(load_profile_file(path) for path in sorted(folder.glob("*.yml")))


def with_overrides(profile: SimulationProfile, **changes: Any) -> SimulationProfile:
    """A class's profile with some fields changed (a test's tiny memory cap, say)."""
    return replace(profile, **changes)
