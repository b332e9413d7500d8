"""Prometheus metrics for power streams (a client_python custom collector).

Exposed families, all labelled ``{device, source, scope}`` (``scope``: what the meter measures,
``wall``/``board``/``module``/``cpu-package``/``battery``; only figures of the same scope compare),
base units:

* ``htfl_power_watts`` (gauge) - latest sample's power;
* ``htfl_energy_joules_total`` (counter) - energy integrated by the sampler since it started
  (trapezoid rule, not across gaps or charging samples);
* ``htfl_power_samples_total`` (counter) - samples taken;
* ``htfl_power_frame_errors_total`` (counter) - unusable replies (garbage, short frames,
  timeouts, bad values);
* ``htfl_power_reconnects_total`` (counter) - successful reopenings after the link was lost;
* ``htfl_power_sample_gaps_total`` (counter) - gaps recorded (disconnects, missed samples);
* ``htfl_power_timeouts_total``, ``htfl_power_bad_frames_total``,
  ``htfl_power_stray_replies_total`` (counters) - the frame errors broken down: no reply in time,
  a complete but invalid reply (asked again at once), input nobody asked for (discarded).

Use it as ``registry.register(PowerCollector(samplers))`` or :func:`serve`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from htfl.device.power.meter import PowerSample

LABELS = ("device", "source", "scope")


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
    @property
    def scope(self) -> str: ...
    @property
    def timeouts(self) -> int: ...
    @property
    def bad_frames(self) -> int: ...
    @property
    def stray_replies(self) -> int: ...


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
            "timeouts": CounterMetricFamily(
                "htfl_power_timeouts",
                "Meter requests that got no complete reply in time.",
                labels=LABELS,
            ),
            "bad_frames": CounterMetricFamily(
                "htfl_power_bad_frames",
                "Complete meter replies that failed validation (checksum, marker, fields).",
                labels=LABELS,
            ),
            "stray_replies": CounterMetricFamily(
                "htfl_power_stray_replies",
                "Meter input nobody asked for (late replies, unsolicited bytes), discarded.",
                labels=LABELS,
            ),
        }

    def describe(self) -> Iterator[Metric]:
        yield from self._families().values()

    def collect(self) -> Iterator[Metric]:
        fam = self._families()
        for s in self._current():
            labels = [s.device, s.source, s.scope]
            latest = s.latest
            if latest is not None:
                fam["watts"].add_metric(labels, latest.watts)
            fam["energy"].add_metric(labels, s.energy_joules)
            fam["samples"].add_metric(labels, s.samples_total)
            fam["frame_errors"].add_metric(labels, s.frame_errors)
            fam["reconnects"].add_metric(labels, s.reconnects)
            fam["gaps"].add_metric(labels, s.gap_count)
            fam["timeouts"].add_metric(labels, s.timeouts)
            fam["bad_frames"].add_metric(labels, s.bad_frames)
            fam["stray_replies"].add_metric(labels, s.stray_replies)
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
