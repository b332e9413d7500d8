"""x86 boards (LattePanda Delta 3 with an Intel N100, or any x86 PC).

CPU frequency comes from the generic cpufreq probe (``intel_pstate`` also
publishes ``scaling_cur_freq``).  Temperatures come from the generic thermal
zones (``acpitz``, ``x86_pkg_temp``) plus the ``coretemp`` hwmon driver, which
gives the package and per-core digital thermal sensors:

``/sys/class/hwmon/hwmonN/name`` == ``coretemp``; ``tempK_input`` in
millidegrees Celsius, ``tempK_label`` such as ``Package id 0`` or ``Core 2``.
(Older kernels keep these files under ``hwmonN/device/``.)

They are exported as ``htfl_device_temperature_celsius`` with ``sensor`` = the
label and ``zone`` = ``coretempS_tempK`` (S numbers the coretemp devices,
one per CPU package, from 0).  Energy via Intel RAPL is not read here:
it belongs to the power exporter (``htfl_power_*``).
"""

from __future__ import annotations

import os
import re
import time

from .base import Probe, ProbeUnavailable, Series

__all__ = ["CoretempProbe"]

TEMPERATURE = "htfl_device_temperature_celsius"
_TEMP_INPUT = re.compile(r"^temp(\d+)_input$")


class CoretempProbe(Probe):
    """Package and core temperatures from the ``coretemp`` hwmon device."""

    name = "coretemp"
    hwmon_pattern = "sys/class/hwmon/hwmon[0-9]*"
    driver_names = ("coretemp",)

    def __init__(self, reader) -> None:
        super().__init__(reader)
        # (directory, [(index, label)]) of the coretemp sensors; rediscovered after a
        # failure, and every rediscover_seconds while none was found.
        self._sensors: list[tuple[str, list[tuple[str, str]]]] | None = None
        self._sensors_at = 0.0

    def forget_discovery(self) -> None:
        super().forget_discovery()
        self._sensors = None

    def _discover_sensors(self) -> list[tuple[str, list[tuple[str, str]]]]:
        found: list[tuple[str, list[tuple[str, str]]]] = []
        for hwmon in self.discover(self.hwmon_pattern, refresh=True):
            for sub in (hwmon, f"{hwmon}/device"):
                try:
                    name = self.reader.read_line(f"{sub}/name")
                except OSError:
                    continue
                if name not in self.driver_names:
                    continue
                sensors: list[tuple[str, str]] = []
                for rel in self.reader.glob(f"{sub}/temp*_input"):
                    match = _TEMP_INPUT.match(os.path.basename(rel))
                    if not match:
                        continue
                    index = match.group(1)
                    try:
                        label = self.reader.read_line(f"{sub}/temp{index}_label")
                    except OSError:
                        label = ""
                    sensors.append((index, label or f"temp{index}"))
                if sensors:
                    found.append((sub, sensors))
                break
        return found

    def read(self) -> list[Series]:
        now = time.monotonic()
        if self._sensors is None or (
            not self._sensors and now - self._sensors_at > self.rediscover_seconds
        ):
            self._sensors = self._discover_sensors()
            self._sensors_at = now
        if not self._sensors:
            raise ProbeUnavailable("no coretemp hwmon device")
        out: list[Series] = []
        error: Exception | None = None
        for ordinal, (sub, sensors) in enumerate(self._sensors):
            for index, label in sensors:
                try:
                    milli = self.reader.read_int(f"{sub}/temp{index}_input")
                except (OSError, ValueError) as exc:
                    error = error or exc
                    continue
                out.append(
                    Series.of(
                        TEMPERATURE,
                        milli / 1000.0,
                        sensor=label,
                        zone=f"coretemp{ordinal}_temp{index}",
                    )
                )
        if not out:
            self._sensors = None
            raise error or ProbeUnavailable("no readable coretemp sensor")
        return out
