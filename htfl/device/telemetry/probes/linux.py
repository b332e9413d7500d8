"""Generic Linux probes, used on every platform.

========================  ==================================================  =========
probe (``probe`` label)   files read (relative to the probe root)             unit
========================  ==================================================  =========
``cpu``                   ``proc/stat`` (``cpu`` and ``cpuN`` lines)          ratio
``cpufreq``               ``sys/devices/system/cpu/cpuN/cpufreq/``            kHz -> Hz
                          ``scaling_cur_freq`` (``cpuinfo_cur_freq`` if the
                          former is absent)
``memory``                ``proc/meminfo`` ``MemTotal`` / ``MemAvailable``     kB -> B
``thermal``               ``sys/class/thermal/thermal_zoneN/{type,temp}``     m°C -> °C
``netdev``                ``proc/net/dev`` receive / transmit bytes           bytes
========================  ==================================================  =========
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .base import Probe, ProbeUnavailable, Series

__all__ = [
    "CpuFreqProbe",
    "CpuTimes",
    "MemInfoProbe",
    "NetDevProbe",
    "ProcStatProbe",
    "ThermalZoneProbe",
    "cpu_utilisation",
    "parse_meminfo",
    "parse_net_dev",
    "parse_proc_stat",
]

CPU_UTIL = "htfl_device_cpu_utilisation_ratio"
CORE_UTIL = "htfl_device_cpu_core_utilisation_ratio"
CPU_FREQ = "htfl_device_cpu_frequency_hertz"
MEM_TOTAL = "htfl_device_memory_total_bytes"
MEM_AVAILABLE = "htfl_device_memory_available_bytes"
TEMPERATURE = "htfl_device_temperature_celsius"
NET_RX = "htfl_device_network_receive_bytes_total"
NET_TX = "htfl_device_network_transmit_bytes_total"

# /proc/stat columns: user nice system idle iowait irq softirq steal guest guest_nice.
# guest and guest_nice are already included in user and nice, so only the first
# eight are summed; idle time is idle + iowait.
_SUMMED_COLUMNS = 8


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """Cumulative clock ticks of one ``cpu`` line of /proc/stat."""

    busy: int
    total: int


def parse_proc_stat(text: str) -> dict[str, CpuTimes]:
    """Parse the ``cpu`` lines of /proc/stat.

    Returns ``{"all": ..., "0": ..., "1": ...}``; raises ``ValueError`` if the
    aggregate line is missing or any cpu line is malformed.
    """
    out: dict[str, CpuTimes] = {}
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        parts = line.split()
        key = parts[0][3:] or "all"
        if key != "all" and not key.isdigit():
            raise ValueError(f"/proc/stat: unexpected line {line[:40]!r}")
        values = [int(v) for v in parts[1 : 1 + _SUMMED_COLUMNS]]
        if len(values) < 4:
            raise ValueError(f"/proc/stat: too few columns in {line[:40]!r}")
        if any(v < 0 for v in values):
            raise ValueError(f"/proc/stat: negative counter in {line[:40]!r}")
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        total = sum(values)
        out[key] = CpuTimes(busy=total - idle, total=total)
    if "all" not in out:
        raise ValueError("/proc/stat: no aggregate 'cpu' line")
    return out


def cpu_utilisation(prev: CpuTimes, cur: CpuTimes) -> float | None:
    """Busy share of the ticks elapsed between two snapshots (``None`` if none)."""
    d_total = cur.total - prev.total
    if d_total <= 0:
        return None
    ratio = (cur.busy - prev.busy) / d_total
    return min(1.0, max(0.0, ratio))


class ProcStatProbe(Probe):
    """Whole-device and per-core CPU utilisation from /proc/stat deltas.

    The first call only records a baseline (the probe is up but exports no
    utilisation yet).  When fewer than one clock tick elapsed for a CPU since the
    baseline (possible at 10 Hz with USER_HZ=100) the previous ratio is repeated
    and the baseline kept, so the next sample covers a longer window.  A CPU whose
    counters went backwards (hot-plug on some Android kernels) gets a new baseline.
    """

    name = "cpu"
    path = "proc/stat"

    def __init__(self, reader) -> None:
        super().__init__(reader)
        self._baseline: dict[str, CpuTimes] = {}
        self._last: dict[str, float] = {}

    def read(self) -> list[Series]:
        current = parse_proc_stat(self.reader.read_text(self.path))
        baseline: dict[str, CpuTimes] = {}
        last: dict[str, float] = {}
        out: list[Series] = []
        for key, times in current.items():
            prev = self._baseline.get(key)
            ratio: float | None = None
            if prev is None or times.total < prev.total or times.busy < prev.busy:
                baseline[key] = times
            elif times.total == prev.total:
                baseline[key] = prev
                ratio = self._last.get(key)
            else:
                baseline[key] = times
                ratio = cpu_utilisation(prev, times)
            if ratio is None:
                continue
            last[key] = ratio
            if key == "all":
                out.append(Series.of(CPU_UTIL, ratio))
            else:
                out.append(Series.of(CORE_UTIL, ratio, cpu=key))
        self._baseline, self._last = baseline, last
        return out


class CpuFreqProbe(Probe):
    """Current frequency of each online CPU (cpufreq reports kHz)."""

    name = "cpufreq"
    pattern = "sys/devices/system/cpu/cpu[0-9]*/cpufreq"
    files = ("scaling_cur_freq", "cpuinfo_cur_freq")

    def read(self) -> list[Series]:
        dirs = self.discover(self.pattern)
        if not dirs:
            raise ProbeUnavailable("no cpufreq directories")
        out: list[Series] = []
        error: Exception | None = None
        vanished = False
        for rel in dirs:
            cpu = os.path.basename(os.path.dirname(rel))[3:]
            for fname in self.files:
                try:
                    khz = self.reader.read_int(f"{rel}/{fname}")
                except FileNotFoundError:
                    continue
                except (OSError, ValueError) as exc:
                    error = error or exc
                    break
                if khz < 0:
                    error = error or ValueError(f"{rel}/{fname}: negative frequency")
                    break
                out.append(Series.of(CPU_FREQ, khz * 1000.0, cpu=cpu))
                break
            else:
                vanished = True
        if vanished:
            self.forget_discovery()
        if not out:
            raise error or ProbeUnavailable("no readable cpufreq file")
        return out


def parse_meminfo(text: str, keys: frozenset[str] | None = None) -> dict[str, int]:
    """``{field: bytes}`` for the ``Key: value [kB]`` lines of /proc/meminfo.

    With *keys*, only those fields are parsed (and parsing stops once all are found).
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        key = key.strip()
        if not sep or (keys is not None and key not in keys):
            continue
        parts = rest.split()
        if not parts:
            continue
        value = int(parts[0])
        unit = parts[1].lower() if len(parts) > 1 else ""
        out[key] = value * 1024 if unit == "kb" else value
        if keys is not None and len(out) == len(keys):
            break
    return out


class MemInfoProbe(Probe):
    """Total and available RAM from /proc/meminfo.

    On Jetson and RK3588 the GPU (and NPU) allocate from this same RAM, so these
    figures include accelerator memory; there is no separate GPU memory metric.
    ``MemAvailable`` is absent on kernels older than 3.14; it is then omitted.
    """

    name = "memory"
    path = "proc/meminfo"
    keys = frozenset({"MemTotal", "MemAvailable"})

    def read(self) -> list[Series]:
        info = parse_meminfo(self.reader.read_text(self.path), self.keys)
        if "MemTotal" not in info:
            raise ValueError("/proc/meminfo: no MemTotal")
        out = [Series.of(MEM_TOTAL, info["MemTotal"])]
        if "MemAvailable" in info:
            out.append(Series.of(MEM_AVAILABLE, info["MemAvailable"]))
        return out


class ThermalZoneProbe(Probe):
    """Every thermal zone's temperature; ``sensor`` is the zone's ``type``.

    The kernel ABI reports millidegrees Celsius.  Zones whose ``temp`` cannot be
    read (restricted on Android, sensor switched off -> EINVAL/ENODATA) are
    skipped; the probe is up as long as one zone was read.
    """

    name = "thermal"
    pattern = "sys/class/thermal/thermal_zone[0-9]*"

    def __init__(self, reader) -> None:
        super().__init__(reader)
        self._types: dict[str, str] = {}

    def forget_discovery(self) -> None:
        super().forget_discovery()
        self._types.clear()

    def _sensor(self, rel: str, zone: str) -> str:
        sensor = self._types.get(zone)
        if sensor is None:
            try:
                sensor = self.reader.read_line(f"{rel}/type") or zone
            except OSError:
                sensor = zone
            self._types[zone] = sensor
        return sensor

    def read(self) -> list[Series]:
        zones = self.discover(self.pattern)
        if not zones:
            raise ProbeUnavailable("no thermal zones")
        out: list[Series] = []
        error: Exception | None = None
        for rel in zones:
            zone = os.path.basename(rel)
            try:
                milli = self.reader.read_int(f"{rel}/temp")
            except FileNotFoundError as exc:
                error = error or exc
                self.forget_discovery()
                continue
            except (OSError, ValueError) as exc:
                error = error or exc
                continue
            out.append(
                Series.of(TEMPERATURE, milli / 1000.0, sensor=self._sensor(rel, zone), zone=zone)
            )
        if not out:
            raise error or ProbeUnavailable("no readable thermal zone")
        return out


def parse_net_dev(text: str) -> dict[str, tuple[int, int]]:
    """``{interface: (receive_bytes, transmit_bytes)}`` from /proc/net/dev.

    Header lines (containing ``|``) and malformed lines are skipped.
    """
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        if "|" in line or ":" not in line:
            continue
        iface, _, rest = line.partition(":")
        fields = rest.split()
        if len(fields) < 16 or not iface.strip():
            continue
        try:
            out[iface.strip()] = (int(fields[0]), int(fields[8]))
        except ValueError:
            continue
    return out


class NetDevProbe(Probe):
    """Per-interface cumulative bytes (all interfaces, including ``lo``)."""

    name = "netdev"
    path = "proc/net/dev"

    def read(self) -> list[Series]:
        counters = parse_net_dev(self.reader.read_text(self.path))
        if not counters:
            raise ValueError("/proc/net/dev: no parsable interface line")
        out: list[Series] = []
        for iface, (rx, tx) in counters.items():
            out.append(Series.of(NET_RX, rx, interface=iface))
            out.append(Series.of(NET_TX, tx, interface=iface))
        return out
