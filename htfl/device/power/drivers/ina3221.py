"""NVIDIA Jetson on-board INA3221 power monitors (read through sysfs).

Two kernel interfaces exist, and both are supported; every path is relative to ``root``
(``/`` on a device, a fixture tree in tests):

* **JetPack 4** (L4T 32, ``ina3221x`` IIO driver)::

      sys/bus/i2c/drivers/ina3221x/<bus>-<addr>/iio:device<N>/rail_name_<c>        rail label
      sys/bus/i2c/drivers/ina3221x/<bus>-<addr>/iio:device<N>/in_power<c>_input    mW
      sys/bus/i2c/drivers/ina3221x/<bus>-<addr>/iio:device<N>/in_voltage<c>_input  mV
      sys/bus/i2c/drivers/ina3221x/<bus>-<addr>/iio:device<N>/in_current<c>_input  mA

  with channel ``c`` in 0..2.

* **JetPack 5 and later** (L4T 35+, mainline ``ina3221`` hwmon driver)::

      sys/bus/i2c/drivers/ina3221/<bus>-<addr>/hwmon/hwmon<N>/in<c>_label   rail label
      sys/bus/i2c/drivers/ina3221/<bus>-<addr>/hwmon/hwmon<N>/in<c>_input   bus voltage, mV
      sys/bus/i2c/drivers/ina3221/<bus>-<addr>/hwmon/hwmon<N>/curr<c>_input current, mA

  with channel ``c`` in 1..3; power is ``in * curr``. The hwmon index ``N`` depends on probe
  order and changes between boots, so it is globbed, never hard-coded.

Which rail is the board's *total input* differs per module (:data:`TOTAL_RAILS`); a configured
``rail`` (one name or a list, summed) overrides the table. Unconnected channels are labelled
``NC`` and ignored. Rails are discovered on :meth:`Ina3221Meter.open`; if a file disappears
(driver reload) ``read`` raises ``OSError`` and the sampler reopens, discovering again.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from htfl.device.power.meter import Clock, Meter, MeterConfigError, PowerSample

#: Rail(s) whose power is the module's total draw, per Jetson model. Several names are summed.
#: AGX Xavier and AGX Orin have no single input rail on their INA3221s: the sum of the module
#: rails is used, which excludes carrier-board losses.
TOTAL_RAILS: dict[str, tuple[str, ...]] = {
    "jetson-nano": ("POM_5V_IN",),
    "jetson-tx2": ("VDD_IN",),
    "jetson-tx2-nx": ("VDD_IN",),
    "jetson-xavier-nx": ("VDD_IN",),
    "jetson-agx-xavier": ("GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"),
    "jetson-orin-nano": ("VDD_IN",),
    "jetson-orin-nx": ("VDD_IN",),
    "jetson-agx-orin": ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"),
}

#: Substrings of ``/proc/device-tree/model`` -> model key, checked in order.
_MODEL_HINTS: tuple[tuple[str, str], ...] = (
    ("orin nano", "jetson-orin-nano"),
    ("orin nx", "jetson-orin-nx"),
    ("agx orin", "jetson-agx-orin"),
    ("xavier nx", "jetson-xavier-nx"),
    ("agx xavier", "jetson-agx-xavier"),
    ("jetson-agx", "jetson-agx-xavier"),
    ("tx2 nx", "jetson-tx2-nx"),
    ("tx2", "jetson-tx2"),
    ("quill", "jetson-tx2"),
    ("nano", "jetson-nano"),
)


def normalise_model(model: str) -> str:
    """``"Orin Nano"``, ``"orin-nano"``, ``"jetson_orin_nano"`` -> ``"jetson-orin-nano"``."""
    key = model.strip().lower().replace("_", "-").replace(" ", "-")
    if not key.startswith("jetson-"):
        key = "jetson-" + key
    return key


def detect_model(root: str = "/") -> str | None:
    """Best guess of the Jetson model from ``<root>/proc/device-tree/model``."""
    path = os.path.join(root, "proc/device-tree/model")
    try:
        with open(path, "rb") as fh:
            text = fh.read().rstrip(b"\x00").decode("ascii", "replace").lower()
    except OSError:
        return None
    for hint, model in _MODEL_HINTS:
        if hint in text:
            return model
    return None


@dataclass(frozen=True)
class Rail:
    """One INA3221 channel."""

    name: str
    layout: str  # "iio" (JetPack 4) or "hwmon" (JetPack 5+)
    directory: str
    channel: int

    def read(self) -> tuple[float, float | None, float | None]:
        """``(watts, volts, amps)``; raises ``OSError`` if the files vanished."""
        if self.layout == "iio":
            mw = _read_int(os.path.join(self.directory, f"in_power{self.channel}_input"))
            mv = _read_optional(os.path.join(self.directory, f"in_voltage{self.channel}_input"))
            ma = _read_optional(os.path.join(self.directory, f"in_current{self.channel}_input"))
            return (
                mw / 1000,
                None if mv is None else mv / 1000,
                None if ma is None else ma / 1000,
            )
        mv = _read_int(os.path.join(self.directory, f"in{self.channel}_input"))
        ma = _read_int(os.path.join(self.directory, f"curr{self.channel}_input"))
        return mv * ma / 1e6, mv / 1000, ma / 1000


def _read_text(path: str) -> str:
    with open(path) as fh:
        return fh.read().strip()


def _read_int(path: str) -> int:
    text = _read_text(path)
    try:
        return int(text)
    except ValueError:
        raise OSError(f"{path}: not an integer: {text!r}") from None


def _read_optional(path: str) -> int | None:
    try:
        return _read_int(path)
    except FileNotFoundError:
        return None


def discover_rails(root: str = "/") -> dict[str, Rail]:
    """All labelled INA3221 rails under ``root`` (both layouts), keyed by rail name."""
    rails: dict[str, Rail] = {}
    iio = os.path.join(glob.escape(root), "sys/bus/i2c/drivers/ina3221x/*/iio:device*")
    for directory in sorted(glob.glob(iio)):
        for channel in range(3):
            label_path = os.path.join(directory, f"rail_name_{channel}")
            if not os.path.exists(label_path):
                continue
            name = _read_text(label_path)
            if name and name.upper() != "NC":
                rails.setdefault(name, Rail(name, "iio", directory, channel))
    hwmon = os.path.join(glob.escape(root), "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*")
    for directory in sorted(glob.glob(hwmon)):
        for channel in (1, 2, 3):
            label_path = os.path.join(directory, f"in{channel}_label")
            if not os.path.exists(label_path):
                continue
            name = _read_text(label_path)
            if name and name.upper() != "NC":
                rails.setdefault(name, Rail(name, "hwmon", directory, channel))
    return rails


class Ina3221Meter(Meter):
    """Total power of a Jetson module from its INA3221 rails.

    ``rail`` (a name or a list of names, summed) overrides the per-model default from
    :data:`TOTAL_RAILS`; ``model`` defaults to what ``/proc/device-tree/model`` says. With a
    single rail the sample carries its volts and amps; with several only watts.
    """

    driver = "ina3221"

    def __init__(
        self,
        *,
        model: str | None = None,
        rail: str | Sequence[str] | None = None,
        root: str = "/",
        device: str = "",
        source: str | None = None,
        clock: Clock = time.time,
    ):
        super().__init__(device=device, source=source, clock=clock)
        self.root = root
        self.model = normalise_model(model) if model else None
        if self.model is not None and rail is None and self.model not in TOTAL_RAILS:
            raise MeterConfigError(
                f"unknown Jetson model {model!r}; known: {sorted(TOTAL_RAILS)} "
                "(or configure 'rail' explicitly)"
            )
        if isinstance(rail, str):
            rail = (rail,)
        self.rail_names: tuple[str, ...] | None = tuple(rail) if rail else None
        self.rails: tuple[Rail, ...] = ()

    def _wanted(self) -> tuple[str, ...]:
        if self.rail_names:
            return self.rail_names
        model = self.model or detect_model(self.root)
        if model is None or model not in TOTAL_RAILS:
            raise MeterConfigError(
                f"cannot tell the Jetson model under {self.root!r}; configure 'model' or 'rail'"
            )
        self.model = model
        return TOTAL_RAILS[model]

    def open(self) -> None:
        wanted = self._wanted()
        found = discover_rails(self.root)
        if not found:
            raise FileNotFoundError(f"no INA3221 rails under {self.root!r}")
        missing = [name for name in wanted if name not in found]
        if missing:
            raise MeterConfigError(
                f"INA3221 rail(s) {missing} not found under {self.root!r}; "
                f"available: {sorted(found)}"
            )
        self.rails = tuple(found[name] for name in wanted)
        self._is_open = True

    def read(self) -> PowerSample:
        if not self._is_open:
            raise FileNotFoundError("INA3221 meter is not open")
        t = self._clock()
        if len(self.rails) == 1:
            watts, volts, amps = self.rails[0].read()
            return PowerSample(t, watts, volts, amps, self.source)
        total = 0.0
        for rail in self.rails:
            total += rail.read()[0]
        return PowerSample(t, total, None, None, self.source)

    def close(self) -> None:
        self._is_open = False
