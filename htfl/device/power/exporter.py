"""Prometheus metrics for power streams (a client_python custom collector).

Exposed families, all labelled ``{device, source}``, base units:

* ``htfl_power_watts`` (gauge) - latest sample's power;
* ``htfl_energy_joules_total`` (counter) - energy integrated by the sampler since it started
  (trapezoid rule, not across gaps or charging samples);
* ``htfl_power_samples_total`` (counter) - samples taken;
* ``htfl_power_frame_errors_total`` (counter) - unusable replies (garbage, short frames,
  timeouts, bad values);
* ``htfl_power_reconnects_total`` (counter) - successful reopenings after the link was lost;
* ``htfl_power_sample_gaps_total`` (counter) - gaps recorded (disconnects, missed samples).

Use it as ``registry.register(PowerCollector(samplers))`` or :func:`serve`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from htfl.device.power.meter import PowerSample

LABELS = ("device", "source")


class PowerStream(Protocol):
    """What the collector reads; :class:`htfl.device.power.sampler.Sampler` provides it.

    Read-only members, so that a plain attribute and a property both provide one.
    """

    @property
    def device(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def latest(self) -> PowerSample | None: ...
    @property
    def energy_joules(self) -> float: ...
    @property
    def samples_total(self) -> int: ...
    @property
    def frame_errors(self) -> int: ...
    @property
    def reconnects(self) -> int: ...
    @property
    def gap_count(self) -> int: ...


class PowerCollector:
    """Collects one set of samples per stream at scrape time (no state of its own)."""

    def __init__(self, streams: Iterable[PowerStream] | Callable[[], Iterable[PowerStream]]):
        self._streams = streams

    def _current(self) -> list[PowerStream]:
        streams = self._streams() if callable(self._streams) else self._streams
        return list(streams)

    @staticmethod
    def _families() -> dict[str, CounterMetricFamily | GaugeMetricFamily]:
        return {
            "watts": GaugeMetricFamily(
                "htfl_power_watts", "Latest measured power draw in watts.", labels=LABELS
            ),
            "energy": CounterMetricFamily(
                "htfl_energy_joules",
                "Energy integrated from power samples, in joules.",
                labels=LABELS,
            ),
            "samples": CounterMetricFamily(
                "htfl_power_samples", "Power samples taken.", labels=LABELS
            ),
            "frame_errors": CounterMetricFamily(
                "htfl_power_frame_errors",
                "Meter replies that could not be decoded (garbage, short frames, timeouts).",
                labels=LABELS,
            ),
            "reconnects": CounterMetricFamily(
                "htfl_power_reconnects",
                "Times the link to a meter was re-established after being lost.",
                labels=LABELS,
            ),
            "gaps": CounterMetricFamily(
                "htfl_power_sample_gaps",
                "Gaps in a power sample stream (disconnects, missed samples).",
                labels=LABELS,
            ),
        }

    def describe(self) -> Iterator[Metric]:
        yield from self._families().values()

    def collect(self) -> Iterator[Metric]:
        fam = self._families()
        for s in self._current():
            labels = [s.device, s.source]
            latest = s.latest
            if latest is not None:
                fam["watts"].add_metric(labels, latest.watts)
            fam["energy"].add_metric(labels, s.energy_joules)
            fam["samples"].add_metric(labels, s.samples_total)
            fam["frame_errors"].add_metric(labels, s.frame_errors)
            fam["reconnects"].add_metric(labels, s.reconnects)
            fam["gaps"].add_metric(labels, s.gap_count)
        yield from fam.values()


def serve(
    streams: Iterable[PowerStream] | Callable[[], Iterable[PowerStream]],
    port: int,
    addr: str = "0.0.0.0",
    registry: CollectorRegistry | None = None,
) -> CollectorRegistry:
    """Register a :class:`PowerCollector` and serve ``/metrics`` on ``addr:port``."""
    registry = registry or CollectorRegistry()
    registry.register(PowerCollector(streams))
    start_http_server(port, addr=addr, registry=registry)
    return registry
