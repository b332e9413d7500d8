"""The settings of each meter driver (the keys of an ``htfl_meter`` mapping), as pydantic tables.

One table per driver, all validated by :mod:`htfl.validation`: every bad key is reported at
once. Values may come from a command line (``--meter key=value``) or an inventory, so digit
strings are accepted where an integer is expected; otherwise types are as written.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, PlainValidator, model_validator

from htfl.validation import (
    LaxInt,
    Number,
    above,
    at_least,
    fail,
    problem,
    raise_problems,
    table,
)


def _non_empty(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(f"expected a non-empty string, got {value!r}")
    return value.strip()


NonEmpty = Annotated[str, PlainValidator(_non_empty)]


def _baudrate(value: Any) -> int:
    value = int(value.strip()) if isinstance(value, str) and value.strip().isdigit() else value
    if isinstance(value, bool) or not isinstance(value, int) or not 50 <= value <= 4_000_000:
        raise fail(f"expected a baud rate (an integer, e.g. 9600 or 115200), got {value!r}")
    return value


Baudrate = Annotated[int, PlainValidator(_baudrate)]
Seconds = Annotated[Number, at_least(0)]
Positive = Annotated[Number, above(0)]
NonNegative = Annotated[Number, at_least(0)]


def choice(*choices: Any) -> PlainValidator:
    """One of ``choices`` exactly (the message lists them)."""

    def run(value: Any) -> Any:
        if value not in choices:
            raise fail(f"expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return value

    return PlainValidator(run)


def _rails(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) and value.strip():
        return (value.strip(),)
    if (
        isinstance(value, list | tuple)
        and value
        and all(isinstance(v, str) and v.strip() for v in value)
    ):
        return tuple(v.strip() for v in value)
    raise fail(f"expected a rail name or a list of names, got {value!r}")


def _command(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) and value.strip():
        return tuple(value.split())
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise fail(f"expected a command (a string or a list), got {value!r}")


_COLUMNS = ("t", "volts", "amps", "watts", "_")


def _columns(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.replace(" ", "").split(",")
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(v, str) and v.strip().lower() in _COLUMNS for v in value)
    ):
        raise fail(f"expected a list of {sorted(_COLUMNS)}, got {value!r}")
    cols = tuple(v.strip().lower() for v in value)
    if "watts" not in cols and not ("volts" in cols and "amps" in cols):
        raise fail(f"expected watts, or volts and amps, among the columns, got {list(cols)}")
    return cols


def _scpi_rate(value: Any) -> str:
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?\s*(MS|S)", value.strip().upper()):
        return value.strip().upper().replace(" ", "")
    raise fail(f"expected an update period like '100MS' or '1S', got {value!r}")


def _ina_model(value: str) -> str:
    from htfl.device.power.drivers.ina3221 import TOTAL_RAILS, normalise_model

    name = normalise_model(value)
    if name not in TOTAL_RAILS:
        raise fail(f"unknown Jetson model {value!r}; known: {sorted(TOTAL_RAILS)}")
    return name


def _scpi_instrument(value: str) -> str:
    from htfl.device.power.drivers.scpi import INSTRUMENTS

    if value.lower() not in INSTRUMENTS:
        raise fail(f"unknown instrument {value!r}; known: {sorted(INSTRUMENTS)}")
    return value.lower()


Rails = Annotated[tuple[str, ...], PlainValidator(_rails)]
Command = Annotated[tuple[str, ...], PlainValidator(_command)]
Columns = Annotated[tuple[str, ...], PlainValidator(_columns)]


# --- one table per driver ------------------------------------------------------------------
@table
class SerialSettings:
    port: NonEmpty
    baudrate: Baudrate = 9600
    timeout: Positive = 1.0
    interval: Seconds = 0.2
    source: NonEmpty | None = None


@table
class UMSettings(SerialSettings):
    """RuiDeng UM24C/UM25C/UM34C."""


@table
class ScpiSettings(SerialSettings):
    interval: Seconds = 0.1
    channel: Annotated[LaxInt, at_least(1)] = 1
    instrument: Annotated[NonEmpty, AfterValidator(_scpi_instrument)] = "wt310"
    rate: Annotated[str, PlainValidator(_scpi_rate)] | None = None


@table
class StreamSettings(SerialSettings):
    baudrate: Baudrate = 115200
    interval: Seconds = 0.0
    columns: Columns = ("t", "volts", "amps")
    time_scale: Positive = 1e-6
    rate_hz: Positive | None = None
    start_command: NonEmpty | None = None
    stop_command: NonEmpty | None = None
    batch_wait: Seconds = 0.01

    @model_validator(mode="after")
    def _rate_without_time(self) -> StreamSettings:
        if "t" not in self.columns and not self.rate_hz:
            raise_problems(
                "stream", [problem("rate_hz", "missing (required without a 't' column)")]
            )
        return self


@table
class Ina3221Settings:
    interval: Seconds = 0.1
    model: Annotated[NonEmpty, AfterValidator(_ina_model)] | None = None
    rail: Rails | None = None
    root: NonEmpty = "/"
    source: NonEmpty | None = None


@table
class RaplSettings:
    interval: Seconds = 0.1
    domain: NonEmpty = "intel-rapl:0"
    root: NonEmpty = "/"
    source: NonEmpty | None = None


def _http_url(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^/\s]+", value.strip()):
        raise fail(f"expected the plug's address as http://HOST[:PORT], got {value!r}")
    return value.strip().rstrip("/")


@table
class PlugSettings:
    """Smart plugs with a local HTTP API (Shelly Gen2+ RPC, Tasmota); read by the workstation."""

    url: Annotated[str, PlainValidator(_http_url)]
    channel: Annotated[LaxInt, at_least(0)] = 0
    timeout: Positive = 2.0
    interval: Seconds = 1.0
    source: NonEmpty | None = None


@table
class TermuxSettings:
    interval: Seconds = 2.0
    mode: Annotated[str, choice("api", "sysfs")] = "api"
    current_sign: Annotated[str | int, choice("auto", 1, -1)] = "auto"
    current_scale: Positive = 1e-6
    voltage_scale: Positive | None = None
    nominal_volts: Positive | None = None
    supply: NonEmpty = "battery"
    root: NonEmpty = "/"
    command: Command = ("termux-battery-status",)
    source: NonEmpty | None = None


@table
class SimulatedSettings:
    idle_watts: NonNegative
    busy_watts: NonNegative
    interval: Seconds = 0.1
    noise_watts: NonNegative = 0.0
    seed: Annotated[LaxInt, at_least(0)] | None = None
    pid: Annotated[LaxInt, at_least(1)] | None = None
    cpu_count: Annotated[LaxInt, at_least(1)] | None = None
    volts: Positive = 5.0
    source: NonEmpty | None = None

    @model_validator(mode="after")
    def _busy_above_idle(self) -> SimulatedSettings:
        if self.busy_watts < self.idle_watts:
            found = problem(
                "busy_watts",
                f"expected >= idle_watts ({self.idle_watts:g}), got {self.busy_watts:g}",
            )
            raise_problems("simulated", [found])
        return self
