"""Prometheus collector for the device exporter, and the worker's phase metrics.

:class:`DeviceCollector` is a custom ``prometheus_client`` collector: its
:meth:`~DeviceCollector.collect` builds metric families from the sampler's latest
:class:`~.sampler.Snapshot` and from :class:`RoundPhaseMetrics` state.  It never
reads sysfs: a scrape costs a few dictionary look-ups per series.

The ``device`` and ``device_class`` labels are given once, to the
:class:`DeviceCollector` constructor, and added to every series it exports.

:data:`METRICS` is the single list of what the device exporter can export;
``docs/metrics.md`` must list exactly these (a test checks it).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .sampler import Sampler, Snapshot

__all__ = [
    "DEVICE_LABELS",
    "DIRECTIONS",
    "METRICS",
    "PHASES",
    "DeviceCollector",
    "MetricSpec",
    "PhaseState",
    "RoundPhaseMetrics",
]

DEVICE_LABELS = ("device", "device_class")
PHASES = ("train", "evaluate", "serialise", "download", "upload", "idle")
DIRECTIONS = ("up", "down")

# gpu_memory value of htfl_device_info per platform: Jetson and RK3588 GPUs/NPUs and
# phone GPUs have no memory of their own and allocate from system RAM.  An x86 box
# may have a discrete GPU (the LattePanda's N100 iGPU is shared, but a PC's may not be).
_GPU_MEMORY = {"jetson": "shared", "rk3588": "shared", "android": "shared"}


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric: exposition name (with ``_total`` for counters)."""

    name: str
    type: str  # "gauge" or "counter"
    unit: str  # base unit, "" for dimensionless/info
    labels: tuple[str, ...]  # metric-specific labels, after device/device_class
    help: str

    @property
    def all_labels(self) -> tuple[str, ...]:
        return (*DEVICE_LABELS, *self.labels)


def _m(name: str, type_: str, unit: str, labels: tuple[str, ...], help_: str) -> MetricSpec:
    return MetricSpec(name, type_, unit, labels, help_)


METRICS: dict[str, MetricSpec] = {
    s.name: s
    for s in (
        _m(
            "htfl_device_info",
            "gauge",
            "",
            ("platform", "gpu_memory"),
            "Always 1; platform = detected probe set, gpu_memory = shared when the "
            "GPU/NPU allocate from system RAM, unknown otherwise.",
        ),
        _m(
            "htfl_device_probe_up",
            "gauge",
            "",
            ("probe",),
            "1 if the probe's last sample succeeded, 0 if its source is missing, "
            "unreadable or malformed (its series are then omitted).",
        ),
        _m(
            "htfl_device_cpu_utilisation_ratio",
            "gauge",
            "ratio",
            (),
            "Busy share of all CPUs over the last sampling period, from /proc/stat.",
        ),
        _m(
            "htfl_device_cpu_core_utilisation_ratio",
            "gauge",
            "ratio",
            ("cpu",),
            "Busy share of one CPU core over the last sampling period, from /proc/stat.",
        ),
        _m(
            "htfl_device_cpu_frequency_hertz",
            "gauge",
            "hertz",
            ("cpu",),
            "Current frequency of one CPU core (cpufreq scaling_cur_freq).",
        ),
        _m(
            "htfl_device_memory_total_bytes",
            "gauge",
            "bytes",
            (),
            "Total usable RAM (MemTotal); shared with the GPU/NPU on SoC boards.",
        ),
        _m(
            "htfl_device_memory_available_bytes",
            "gauge",
            "bytes",
            (),
            "RAM available for new allocations without swapping (MemAvailable).",
        ),
        _m(
            "htfl_device_temperature_celsius",
            "gauge",
            "celsius",
            ("sensor", "zone"),
            "Temperature of a thermal zone or coretemp sensor.",
        ),
        _m(
            "htfl_device_network_receive_bytes_total",
            "counter",
            "bytes",
            ("interface",),
            "Bytes received by a network interface since boot (/proc/net/dev).",
        ),
        _m(
            "htfl_device_network_transmit_bytes_total",
            "counter",
            "bytes",
            ("interface",),
            "Bytes transmitted by a network interface since boot (/proc/net/dev).",
        ),
        _m(
            "htfl_device_gpu_utilisation_ratio",
            "gauge",
            "ratio",
            ("gpu",),
            "Busy share of the integrated GPU as reported by its driver.",
        ),
        _m(
            "htfl_device_gpu_frequency_hertz",
            "gauge",
            "hertz",
            ("gpu",),
            "Current frequency of the integrated GPU (devfreq).",
        ),
        _m(
            "htfl_device_gpu_memory_used_bytes",
            "gauge",
            "bytes",
            ("gpu",),
            "Memory in use on a discrete NVIDIA GPU (NVML; absent on shared-memory boards).",
        ),
        _m(
            "htfl_device_gpu_memory_total_bytes",
            "gauge",
            "bytes",
            ("gpu",),
            "Memory of a discrete NVIDIA GPU (NVML; absent on shared-memory boards).",
        ),
        _m(
            "htfl_device_emc_utilisation_ratio",
            "gauge",
            "ratio",
            (),
            "Busy share of a Jetson's memory controller (EMC; jtop, else actmon / EMC rate).",
        ),
        _m(
            "htfl_device_emc_frequency_hertz",
            "gauge",
            "hertz",
            (),
            "Clock of a Jetson's memory controller (EMC; jtop, else the clock debugfs).",
        ),
        _m(
            "htfl_device_gpu_rail_power_watts",
            "gauge",
            "watts",
            ("rail",),
            "Power of the INA3221 rail that feeds a Jetson's GPU (named by rail).",
        ),
        _m(
            "htfl_device_npu_utilisation_ratio",
            "gauge",
            "ratio",
            ("core",),
            "Busy share of one NPU core (RK3588 rknpu driver).",
        ),
        _m(
            "htfl_device_worker_resident_memory_bytes",
            "gauge",
            "bytes",
            (),
            "Resident set size of the FL worker process.",
        ),
        _m(
            "htfl_device_worker_cpu_seconds_total",
            "counter",
            "seconds",
            (),
            "User + system CPU time of the FL worker process.",
        ),
        _m(
            "htfl_device_worker_cpu_utilisation_ratio",
            "gauge",
            "ratio",
            (),
            "CPU used by the FL worker over the last sampling period, as a share of all "
            "CPUs of the device.",
        ),
        _m(
            "htfl_device_sample_timestamp_seconds",
            "gauge",
            "seconds",
            (),
            "Unix time at which the latest telemetry sample completed.",
        ),
        _m(
            "htfl_device_sample_duration_seconds",
            "gauge",
            "seconds",
            (),
            "Wall time the latest telemetry sample took.",
        ),
        _m(
            "htfl_device_telemetry_cpu_seconds_total",
            "counter",
            "seconds",
            (),
            "CPU time spent by the telemetry sampler itself (overhead of this exporter).",
        ),
        _m(
            "htfl_device_phase_seconds_total",
            "counter",
            "seconds",
            ("phase",),
            "Time the FL worker spent in each round phase, summed over all rounds.",
        ),
        _m(
            "htfl_device_last_round_phase_seconds",
            "gauge",
            "seconds",
            ("phase",),
            "Time spent in the phase during the latest round in which it occurred.",
        ),
        _m(
            "htfl_device_network_payload_bytes_total",
            "counter",
            "bytes",
            ("direction",),
            "FL payload bytes sent (up) to / received (down) from the server, as counted "
            "by the worker (excludes protocol overhead).",
        ),
        _m(
            "htfl_device_clock_offset_seconds",
            "gauge",
            "seconds",
            (),
            "Device clock minus server clock, as last estimated by the worker.",
        ),
        _m(
            "htfl_device_round",
            "gauge",
            "",
            (),
            "Federated-learning round the worker is in (or last took part in).",
        ),
    )
}


@dataclass(frozen=True)
class PhaseState:
    """A consistent copy of :class:`RoundPhaseMetrics` for one scrape."""

    totals: dict[str, float]
    last_round: dict[str, float]
    payload_bytes: dict[str, int]
    clock_offset: float | None
    round: int | None


class RoundPhaseMetrics:
    """What the FL worker reports about its rounds; thread-safe, no labels.

    * :meth:`observe_phase` adds *seconds* to ``htfl_device_phase_seconds_total``
      and to the phase's ``htfl_device_last_round_phase_seconds``, which holds the
      sum of the phase's observations in the latest round in which the phase was
      observed: the first observation in a new round (see :meth:`set_round`)
      replaces the previous round's value, further ones in the same round add up.
    * :meth:`add_bytes` counts FL payload bytes (``up`` = to the server).
    * :meth:`set_clock_offset` records device clock minus server clock.
    * :meth:`set_round` records the current round number.

    ``htfl_device_clock_offset_seconds`` and ``htfl_device_round`` are exported once
    set; phase and payload counters start at 0 for every phase/direction.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals = dict.fromkeys(PHASES, 0.0)
        self._last: dict[str, tuple[int | None, float]] = {}
        self._bytes = dict.fromkeys(DIRECTIONS, 0)
        self._clock_offset: float | None = None
        self._round: int | None = None

    def observe_phase(self, phase: str, seconds: float) -> None:
        if phase not in self._totals:
            raise ValueError(f"unknown phase {phase!r}; expected one of {PHASES}")
        seconds = float(seconds)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"phase duration must be a finite number >= 0, got {seconds!r}")
        with self._lock:
            self._totals[phase] += seconds
            prev = self._last.get(phase)
            if prev is not None and prev[0] == self._round:
                self._last[phase] = (self._round, prev[1] + seconds)
            else:
                self._last[phase] = (self._round, seconds)

    @contextmanager
    def time_phase(self, phase: str, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
        """``with phases.time_phase("train"): ...`` observes the block's duration."""
        if phase not in self._totals:
            raise ValueError(f"unknown phase {phase!r}; expected one of {PHASES}")
        start = clock()
        try:
            yield
        finally:
            self.observe_phase(phase, max(0.0, clock() - start))

    def add_bytes(self, direction: str, n: int) -> None:
        if direction not in self._bytes:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"byte count must be an int >= 0, got {n!r}")
        with self._lock:
            self._bytes[direction] += n

    def set_clock_offset(self, seconds: float) -> None:
        seconds = float(seconds)
        if not math.isfinite(seconds):
            raise ValueError(f"clock offset must be finite, got {seconds!r}")
        with self._lock:
            self._clock_offset = seconds

    def set_round(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"round must be an int >= 0, got {n!r}")
        with self._lock:
            self._round = n

    def state(self) -> PhaseState:
        with self._lock:
            return PhaseState(
                totals=dict(self._totals),
                last_round={p: v for p, (_, v) in self._last.items()},
                payload_bytes=dict(self._bytes),
                clock_offset=self._clock_offset,
                round=self._round,
            )


def _family(spec: MetricSpec) -> CounterMetricFamily | GaugeMetricFamily:
    if spec.type == "counter":
        return CounterMetricFamily(spec.name, spec.help, labels=spec.all_labels, unit=spec.unit)
    return GaugeMetricFamily(spec.name, spec.help, labels=spec.all_labels, unit=spec.unit)


class DeviceCollector(Collector):
    """Exports the latest snapshot and the round-phase state of one device.

    *source* is a :class:`~.sampler.Sampler` or any callable returning a
    :class:`~.sampler.Snapshot`.
    """

    def __init__(
        self,
        device: str,
        device_class: str,
        source: Sampler | Callable[[], Snapshot],
        phases: RoundPhaseMetrics | None = None,
        platform: str = "linux",
    ) -> None:
        for label, value in (("device", device), ("device_class", device_class)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{label} must be a non-empty string, got {value!r}")
        self.device = device
        self.device_class = device_class
        self._const = (device, device_class)
        self.platform = platform
        self.phases = phases if phases is not None else RoundPhaseMetrics()
        if isinstance(source, Sampler):
            sampler = source
            self._snapshot: Callable[[], Snapshot] = lambda: sampler.latest
        else:
            self._snapshot = source

    def describe(self) -> list[Metric]:
        return [_family(spec) for spec in METRICS.values()]

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        phases = self.phases.state()
        const = self._const
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}

        def add(name: str, value: float, *label_values: str) -> None:
            family = families.get(name)
            if family is None:
                family = families[name] = _family(METRICS[name])
            family.add_metric([*const, *label_values], value)

        platform = self.platform
        add("htfl_device_info", 1, platform, _GPU_MEMORY.get(platform, "unknown"))
        for probe, up in sorted(snap.probes.items()):
            add("htfl_device_probe_up", 1 if up else 0, probe)
        for s in snap.series:
            spec = METRICS.get(s.name)
            if spec is None:
                continue
            labels = dict(s.labels)
            add(s.name, s.value, *(labels.get(k, "") for k in spec.labels))
        if snap.seq:
            add("htfl_device_sample_timestamp_seconds", snap.timestamp)
            add("htfl_device_sample_duration_seconds", snap.duration_seconds)
            add("htfl_device_telemetry_cpu_seconds_total", snap.telemetry_cpu_seconds)
        for phase in PHASES:
            add("htfl_device_phase_seconds_total", phases.totals[phase], phase)
        for phase in PHASES:
            if phase in phases.last_round:
                add("htfl_device_last_round_phase_seconds", phases.last_round[phase], phase)
        for direction in DIRECTIONS:
            add(
                "htfl_device_network_payload_bytes_total",
                phases.payload_bytes[direction],
                direction,
            )
        if phases.clock_offset is not None:
            add("htfl_device_clock_offset_seconds", phases.clock_offset)
        if phases.round is not None:
            add("htfl_device_round", phases.round)

        for name in METRICS:
            if name in families:
                yield families[name]
