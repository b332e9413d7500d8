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

:meth:`MeterSpec.from_mapping` validates one mapping (unknown driver, unknown or missing keys,
bad values) and raises :class:`MeterSpecError` naming the device and the key (drivers and
their keys are listed in :data:`SCHEMAS` and in ``docs/power.md``);
:func:`open_meter` builds the driver object, :func:`make_sampler` a sampler around it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from htfl.device.power.meter import Meter
from htfl.device.power.sampler import Sampler, SerialSampler

INVENTORY_VAR = "htfl_meter"


class MeterSpecError(ValueError):
    """An ``htfl_meter`` mapping is invalid; says which device and which key."""

    def __init__(self, device: str, key: str, message: str):
        self.device = device
        self.key = key
        super().__init__(f"device {device!r}: {INVENTORY_VAR}.{key}: {message}")


# -- value checkers: (device, key, value) -> normalised value, or raise -------------------
Checker = Callable[[str, str, Any], Any]


def _string(device: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MeterSpecError(device, key, f"must be a non-empty string, got {value!r}")
    return value.strip()


def _integer(minimum: int) -> Checker:
    def check(device: str, key: str, value: Any) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise MeterSpecError(device, key, f"must be an integer >= {minimum}, got {value!r}")
        return value

    return check


def _baudrate(device: str, key: str, value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 50 <= value <= 4_000_000:
        raise MeterSpecError(
            device, key, f"must be a baud rate (integer, e.g. 9600 or 115200), got {value!r}"
        )
    return value


def _number(minimum: float = 0.0, *, strict: bool = False) -> Checker:
    def check(device: str, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MeterSpecError(device, key, f"must be a number, got {value!r}")
        if value < minimum or (strict and value == minimum):
            op = ">" if strict else ">="
            raise MeterSpecError(device, key, f"must be {op} {minimum}, got {value!r}")
        return float(value)

    return check


def _optional(check: Checker) -> Checker:
    def wrapped(device: str, key: str, value: Any) -> Any:
        return None if value is None else check(device, key, value)

    return wrapped


def _choice(*choices: Any) -> Checker:
    def check(device: str, key: str, value: Any) -> Any:
        if value not in choices:
            raise MeterSpecError(
                device, key, f"must be one of {', '.join(map(repr, choices))}, got {value!r}"
            )
        return value

    return check


def _rails(device: str, key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) and value.strip():
        return (value.strip(),)
    if (
        isinstance(value, list | tuple)
        and value
        and all(isinstance(v, str) and v.strip() for v in value)
    ):
        return tuple(v.strip() for v in value)
    raise MeterSpecError(device, key, f"must be a rail name or a list of names, got {value!r}")


def _command(device: str, key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) and value.strip():
        return tuple(value.split())
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise MeterSpecError(device, key, f"must be a command (string or list), got {value!r}")


def _columns(device: str, key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",")]
    allowed = {"t", "volts", "amps", "watts", "_"}
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(v, str) and v.strip().lower() in allowed for v in value)
    ):
        raise MeterSpecError(device, key, f"must be a list of {sorted(allowed)}, got {value!r}")
    cols = tuple(v.strip().lower() for v in value)
    if "watts" not in cols and not ("volts" in cols and "amps" in cols):
        raise MeterSpecError(device, key, "must include watts, or volts and amps")
    return cols


def _scpi_rate(device: str, key: str, value: Any) -> str:
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?\s*(MS|S)", value.strip().upper()):
        return value.strip().upper().replace(" ", "")
    raise MeterSpecError(
        device, key, f"must be an update period like '100MS' or '1S', got {value!r}"
    )


def _ina_model(device: str, key: str, value: Any) -> str:
    from htfl.device.power.drivers.ina3221 import TOTAL_RAILS, normalise_model

    name = normalise_model(_string(device, key, value))
    if name not in TOTAL_RAILS:
        raise MeterSpecError(
            device, key, f"unknown Jetson model {value!r}; known: {sorted(TOTAL_RAILS)}"
        )
    return name


def _scpi_instrument(device: str, key: str, value: Any) -> str:
    from htfl.device.power.drivers.scpi import INSTRUMENTS

    name = _string(device, key, value).lower()
    if name not in INSTRUMENTS:
        raise MeterSpecError(
            device, key, f"unknown instrument {value!r}; known: {sorted(INSTRUMENTS)}"
        )
    return name


@dataclass(frozen=True)
class _Key:
    check: Checker
    default: Any = None
    required: bool = False


_SERIAL = {
    "port": _Key(_string, required=True),
    "baudrate": _Key(_baudrate, 9600),
    "timeout": _Key(_number(0.0, strict=True), 1.0),
}
_UM = {**_SERIAL, "interval": _Key(_number(), 0.2)}
_COMMON = {
    "source": _Key(_optional(_string)),
}

SCHEMAS: dict[str, dict[str, _Key]] = {
    "um24c": _UM,
    "um25c": _UM,
    "um34c": _UM,
    "scpi": {
        **_SERIAL,
        "interval": _Key(_number(), 0.1),
        "channel": _Key(_integer(1), 1),
        "instrument": _Key(_scpi_instrument, "wt310"),
        "rate": _Key(_optional(_scpi_rate)),
    },
    "stream": {
        **_SERIAL,
        "baudrate": _Key(_baudrate, 115200),
        "interval": _Key(_number(), 0.0),
        "columns": _Key(_columns, ("t", "volts", "amps")),
        "time_scale": _Key(_number(0.0, strict=True), 1e-6),
        "rate_hz": _Key(_optional(_number(0.0, strict=True))),
        "start_command": _Key(_optional(_string)),
        "stop_command": _Key(_optional(_string)),
        "batch_wait": _Key(_number(), 0.01),
    },
    "ina3221": {
        "interval": _Key(_number(), 0.1),
        "model": _Key(_optional(_ina_model)),
        "rail": _Key(_optional(_rails)),
        "root": _Key(_string, "/"),
    },
    "rapl": {
        "interval": _Key(_number(), 0.1),
        "domain": _Key(_string, "intel-rapl:0"),
        "root": _Key(_string, "/"),
    },
    "termux": {
        "interval": _Key(_number(), 2.0),
        "mode": _Key(_choice("api", "sysfs"), "api"),
        "current_sign": _Key(_choice("auto", 1, -1), "auto"),
        "current_scale": _Key(_number(0.0, strict=True), 1e-6),
        "voltage_scale": _Key(_optional(_number(0.0, strict=True))),
        "nominal_volts": _Key(_optional(_number(0.0, strict=True))),
        "supply": _Key(_string, "battery"),
        "root": _Key(_string, "/"),
        "command": _Key(_command, ("termux-battery-status",)),
    },
    "simulated": {
        "interval": _Key(_number(), 0.1),
        "idle_watts": _Key(_number(), required=True),
        "busy_watts": _Key(_number(), required=True),
        "noise_watts": _Key(_number(), 0.0),
        "seed": _Key(_optional(_integer(0))),
        "pid": _Key(_optional(_integer(1))),
        "cpu_count": _Key(_optional(_integer(1))),
        "volts": _Key(_number(0.0, strict=True), 5.0),
    },
}
DRIVERS: tuple[str, ...] = tuple(SCHEMAS)
SERIAL_DRIVERS = frozenset({"um24c", "um25c", "um34c", "scpi", "stream"})


@dataclass(frozen=True)
class MeterSpec:
    """A validated meter configuration for one device (all defaults filled in)."""

    device: str
    driver: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def interval(self) -> float:
        """Sampling period in seconds (0 = as fast as the meter answers)."""
        return float(self.options["interval"])

    @property
    def source(self) -> str:
        return self.options.get("source") or self.driver

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], device: str) -> MeterSpec:
        if not isinstance(device, str) or not device:
            raise ValueError(f"device name must be a non-empty string, got {device!r}")
        if not isinstance(mapping, Mapping):
            raise MeterSpecError(
                device, "driver", f"{INVENTORY_VAR} must be a mapping, got {type(mapping).__name__}"
            )
        if "driver" not in mapping:
            raise MeterSpecError(device, "driver", f"missing (one of: {', '.join(DRIVERS)})")
        driver = mapping["driver"]
        if not isinstance(driver, str) or driver.strip().lower() not in SCHEMAS:
            raise MeterSpecError(
                device, "driver", f"unknown driver {driver!r} (one of: {', '.join(DRIVERS)})"
            )
        driver = driver.strip().lower()
        schema = {**_COMMON, **SCHEMAS[driver]}
        options: dict[str, Any] = {}
        for key in mapping:
            if key == "driver":
                continue
            if key not in schema:
                raise MeterSpecError(
                    device,
                    str(key),
                    f"unknown key for driver {driver!r} (known: {', '.join(sorted(schema))})",
                )
        for key, rule in schema.items():
            if key in mapping:
                options[key] = rule.check(device, key, mapping[key])
            elif rule.required:
                raise MeterSpecError(device, key, f"missing (required by driver {driver!r})")
            else:
                options[key] = rule.default
        if driver == "simulated" and options["busy_watts"] < options["idle_watts"]:
            raise MeterSpecError(device, "busy_watts", "must be >= idle_watts")
        if driver == "stream" and "t" not in options["columns"] and not options["rate_hz"]:
            raise MeterSpecError(device, "rate_hz", "missing (required without a 't' column)")
        return cls(device=device, driver=driver, options=MappingProxyType(options))

    def to_mapping(self) -> dict[str, Any]:
        """The spec back as an inventory mapping (defaults included, ``None`` left out)."""
        out: dict[str, Any] = {"driver": self.driver}
        for key, value in self.options.items():
            if value is not None:
                out[key] = list(value) if isinstance(value, tuple) else value
        return out


def open_meter(spec: MeterSpec, *, open_now: bool = True) -> Meter:
    """Build the driver for ``spec`` (and open it unless ``open_now`` is false)."""
    o = spec.options
    common: dict[str, Any] = {"device": spec.device, "source": o.get("source")}
    meter: Meter
    if spec.driver in ("um24c", "um25c", "um34c"):
        from htfl.device.power.drivers.um import UMMeter

        meter = UMMeter(
            o["port"], model=spec.driver, baudrate=o["baudrate"], timeout=o["timeout"], **common
        )
    elif spec.driver == "scpi":
        from htfl.device.power.drivers.scpi import ScpiMeter

        meter = ScpiMeter(
            o["port"],
            baudrate=o["baudrate"],
            element=o["channel"],
            commands=o["instrument"],
            rate=o["rate"],
            timeout=o["timeout"],
            **common,
        )
    elif spec.driver == "stream":
        from htfl.device.power.drivers.stream import StreamMeter

        meter = StreamMeter(
            o["port"],
            columns=o["columns"],
            baudrate=o["baudrate"],
            time_scale=o["time_scale"],
            rate_hz=o["rate_hz"],
            start_command=o["start_command"],
            stop_command=o["stop_command"],
            batch_wait=o["batch_wait"],
            timeout=o["timeout"],
            **common,
        )
    elif spec.driver == "ina3221":
        from htfl.device.power.drivers.ina3221 import Ina3221Meter

        meter = Ina3221Meter(model=o["model"], rail=o["rail"], root=o["root"], **common)
    elif spec.driver == "rapl":
        from htfl.device.power.drivers.rapl import RaplMeter

        meter = RaplMeter(domain=o["domain"], root=o["root"], **common)
    elif spec.driver == "termux":
        from htfl.device.power.drivers.termux import TermuxMeter

        meter = TermuxMeter(
            mode=o["mode"],
            current_sign=o["current_sign"],
            current_scale=o["current_scale"],
            voltage_scale=o["voltage_scale"],
            nominal_volts=o["nominal_volts"],
            supply=o["supply"],
            root=o["root"],
            command=o["command"],
            **common,
        )
    elif spec.driver == "simulated":
        from htfl.device.power.drivers.simulated import SimulatedMeter

        meter = SimulatedMeter(
            idle_watts=o["idle_watts"],
            busy_watts=o["busy_watts"],
            noise_watts=o["noise_watts"],
            seed=o["seed"],
            pid=o["pid"],
            cpu_count=o["cpu_count"],
            volts=o["volts"],
            **common,
        )
    else:  # pragma: no cover - from_mapping rejects unknown drivers
        raise MeterSpecError(spec.device, "driver", f"unknown driver {spec.driver!r}")
    if open_now:
        meter.open()
    return meter


def make_sampler(spec: MeterSpec, **kwargs: Any) -> Sampler:
    """A (not yet started) sampler for ``spec``; the sampler opens the meter itself."""
    meter = open_meter(spec, open_now=False)
    cls = SerialSampler if spec.driver in SERIAL_DRIVERS else Sampler
    kwargs.setdefault("interval", spec.interval)
    return cls(meter, **kwargs)


def specs_from_hostvars(hostvars: Mapping[str, Mapping[str, Any]]) -> dict[str, MeterSpec]:
    """``{host: MeterSpec}`` for every host whose (resolved) variables name a meter."""
    return {
        host: MeterSpec.from_mapping(hv[INVENTORY_VAR], host)
        for host, hv in sorted(hostvars.items())
        if hv.get(INVENTORY_VAR) is not None
    }
