"""Meter configuration from the inventory (the ``htfl_meter`` host variable).

Each device's meter is one mapping, for example (Ansible YAML inventory)::

    all:
      hosts:
        nano-01:
          htfl_meter: {driver: um25c, port: /dev/rfcomm0}
        panda-01:
          htfl_meter: {driver: rapl}
        logger-01:
          htfl_meter: {driver: stream, port: /dev/ttyACM0, rate_hz: 1000}
        phone-01:
          htfl_meter: {driver: termux, current_sign: auto}
      children:
        orins:
          vars:
            htfl_meter: {driver: ina3221, model: jetson-orin-nano}
          hosts:
            orin-01:
            orin-02:

:meth:`MeterSpec.from_mapping` validates one mapping against its driver's settings table
(:data:`~htfl.device.power.drivers.DRIVERS`, ``docs/power.md``) and raises
:class:`MeterSpecError` naming the device and every bad key at once; :func:`open_meter` builds
the driver object, :func:`make_sampler` a sampler around it. Validation reads no file and
opens no port.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from htfl.device.power.drivers import DRIVERS, SCOPES
from htfl.device.power.meter import Meter
from htfl.device.power.sampler import Sampler, SerialSampler
from htfl.validation import build

INVENTORY_VAR = "htfl_meter"
#: Keys of an ``htfl_meter`` mapping that every driver takes (not part of its settings table):
#: ``scope`` (what it measures, :data:`SCOPES`; default per driver) and ``read_by`` (``device``:
#: the device's agent reads it; ``workstation``: ``htfl power hub`` on the workstation does).
COMMON_KEYS = ("scope", "read_by")
READERS = ("device", "workstation")
SERIAL_DRIVERS = frozenset(name for name, d in DRIVERS.items() if d.serial)


class MeterSpecError(ValueError):
    """``htfl_meter`` mappings are invalid: one line per problem, naming device and key.

    ``problems`` holds ``(device, key, message)`` for each; ``device`` and ``key`` are the
    first one's.
    """

    def __init__(
        self, device: str, key: str, message: str, more: Sequence[tuple[str, str, str]] = ()
    ) -> None:
        self.problems = [(device, key, message), *more]
        self.device, self.key = device, key
        super().__init__(
            "\n".join(f"device {d!r}: {INVENTORY_VAR}.{k}: {m}" for d, k, m in self.problems)
        )

    @classmethod
    def collect(cls, problems: list[tuple[str, str, str]]) -> MeterSpecError:
        (device, key, message), *more = problems
        return cls(device, key, message, more)


def _driver_problem(device: str, mapping: Mapping[str, Any]) -> tuple[str, str, str] | None:
    names = ", ".join(DRIVERS)
    if "driver" not in mapping:
        return (device, "driver", f"missing (one of: {names})")
    driver = mapping["driver"]
    if not isinstance(driver, str) or driver.strip().lower() not in DRIVERS:
        return (device, "driver", f"unknown driver {driver!r} (one of: {names})")
    return None


@dataclass(frozen=True)
class MeterSpec:
    """A validated meter configuration for one device (all defaults filled in)."""

    device: str
    driver: str
    options: Mapping[str, Any] = field(default_factory=dict)
    scope: str = ""  # filled in by from_mapping: the driver's default unless declared
    read_by: str = "device"

    @property
    def on_workstation(self) -> bool:
        return self.read_by == "workstation"

    @property
    def interval(self) -> float:
        """Sampling period in seconds (0 = as fast as the meter answers)."""
        return float(self.options["interval"])

    @property
    def source(self) -> str:
        return self.options.get("source") or self.driver

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], device: str) -> MeterSpec:
        """Validate one ``htfl_meter`` mapping; :class:`MeterSpecError` names every problem."""
        if not isinstance(device, str) or not device:
            raise ValueError(f"device name must be a non-empty string, got {device!r}")
        if not isinstance(mapping, Mapping):
            kind = type(mapping).__name__
            raise MeterSpecError(device, "driver", f"{INVENTORY_VAR} must be a mapping, got {kind}")
        bad_driver = _driver_problem(device, mapping)
        if bad_driver is not None:
            raise MeterSpecError.collect([bad_driver])
        driver = mapping["driver"].strip().lower()
        settings_cls = DRIVERS[driver].settings
        lines: list[str] = []
        scope = mapping.get("scope", DRIVERS[driver].scope)
        if scope not in SCOPES:
            lines.append(f"scope: expected one of {', '.join(SCOPES)}, got {scope!r}")
        read_by = mapping.get("read_by", "device")
        if read_by not in READERS:
            lines.append(f"read_by: expected one of {', '.join(READERS)}, got {read_by!r}")
        settings = build(
            settings_cls,
            {k: v for k, v in mapping.items() if k != "driver" and k not in COMMON_KEYS},
            "",
            lines,
            missing=f"missing (required by driver {driver!r})",
            unknown=f"unknown key for driver {driver!r}",
        )
        if settings is None or lines:
            raise MeterSpecError.collect([(device, *_split(line)) for line in lines])
        options = dataclasses.asdict(settings)
        return cls(
            device=device,
            driver=driver,
            options=MappingProxyType(options),
            scope=scope,
            read_by=read_by,
        )

    def to_mapping(self) -> dict[str, Any]:
        """The spec back as an inventory mapping (defaults included, ``None`` left out)."""
        out: dict[str, Any] = {"driver": self.driver, "scope": self.scope}
        if self.read_by != "device":
            out["read_by"] = self.read_by
        for key, value in self.options.items():
            if value is not None:
                out[key] = list(value) if isinstance(value, tuple) else value
        return out


def _split(line: str) -> tuple[str, str]:
    key, _, message = line.partition(": ")
    return key, message


def open_meter(spec: MeterSpec, *, open_now: bool = True) -> Meter:
    """Build the driver for ``spec`` (and open it unless ``open_now`` is false)."""
    driver = DRIVERS[spec.driver]
    settings = driver.settings(**spec.options)
    meter: Meter = driver.meter_class()(
        device=spec.device, **driver.arguments(spec.driver, settings)
    )
    if open_now:
        meter.open()
    return meter


def make_sampler(spec: MeterSpec, **kwargs: Any) -> Sampler:
    """A (not yet started) sampler for ``spec``; the sampler opens the meter itself."""
    meter = open_meter(spec, open_now=False)
    cls = SerialSampler if spec.driver in SERIAL_DRIVERS else Sampler
    kwargs.setdefault("interval", spec.interval)
    kwargs.setdefault("scope", spec.scope)
    return cls(meter, **kwargs)


def specs_from_hostvars(hostvars: Mapping[str, Mapping[str, Any]]) -> dict[str, MeterSpec]:
    """``{host: MeterSpec}`` for every host whose (resolved) variables name a meter.

    Every host is checked before raising, so one :class:`MeterSpecError` lists all problems.
    """
    specs: dict[str, MeterSpec] = {}
    problems: list[tuple[str, str, str]] = []
    for host, hv in sorted(hostvars.items()):
        if hv.get(INVENTORY_VAR) is None:
            continue
        try:
            specs[host] = MeterSpec.from_mapping(hv[INVENTORY_VAR], host)
        except MeterSpecError as err:
            problems.extend(err.problems)
    if problems:
        raise MeterSpecError.collect(problems)
    return specs
