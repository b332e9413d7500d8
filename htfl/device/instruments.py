"""What the agent measures about itself: round phases, payload bytes and energy.

The same figures go two ways: to the device's ``/metrics`` (the live view) and into each
reply's metrics, from which the server writes ``results/<id>/rounds.csv`` (the record).
"""

from __future__ import annotations

import collections
import errno
import logging
import time
from dataclasses import dataclass
from typing import Any

from htfl.device.power.energy import IntervalEnergy, attribute
from htfl.device.power.exporter import PowerCollector
from htfl.device.power.meter import PowerSample
from htfl.device.telemetry import DeviceTelemetry

log = logging.getLogger(__name__)

#: Samples kept for per-message energy (at 10 Hz, about 5.5 hours).
SAMPLE_HISTORY = 200_000


@dataclass(frozen=True)
class TaskTiming:
    """When a message reached the worker, and what it cost to get it there."""

    received_at: float  # wall clock, after the message was pulled
    download_seconds: float  # pulling the message from the SuperNode into the worker
    idle_seconds: float  # since the previous reply was pushed
    idle_started_at: float  # wall clock


class MetricsPortInUse(RuntimeError):
    """The agent's /metrics port is taken: a setup mistake, reported as one line."""


class DeviceInstruments:
    """Phases and bytes for the exporter; a power meter whose samples price each message."""

    def __init__(
        self,
        device: str,
        device_class: str,
        metrics_port: int | None = None,
        metrics_host: str = "0.0.0.0",
        meter: dict[str, Any] | None = None,
        telemetry_rate_hz: float = 1.0,
    ) -> None:
        self.device = device
        self.metrics_port = metrics_port
        self.metrics_host = metrics_host
        self.telemetry = DeviceTelemetry(device, device_class, rate_hz=telemetry_rate_hz)
        self._samples: collections.deque[PowerSample] = collections.deque(maxlen=SAMPLE_HISTORY)
        self.sampler = None
        if meter:
            from htfl.device.power.config import MeterSpec, make_sampler

            spec = MeterSpec.from_mapping(meter, device)
            self.sampler = make_sampler(spec, on_sample=self._samples.append)
            self.telemetry.registry.register(PowerCollector([self.sampler]))

    def start(self) -> None:
        """Start the meter and /metrics; a port already taken is a :class:`MetricsPortInUse`."""
        if self.metrics_port is not None:
            try:
                server = self.telemetry.start(self.metrics_port, self.metrics_host)
            except OSError as err:
                if err.errno != errno.EADDRINUSE:
                    raise
                raise MetricsPortInUse(
                    f"--metrics-port {self.metrics_port}: {self.metrics_host}:"
                    f"{self.metrics_port} is already in use (another agent on this host? give "
                    "each its own --metrics-port, or 0 for any free port)"
                ) from None
            log.info("metrics on http://%s:%s/metrics", self.metrics_host, server.port)
        if self.sampler is not None:
            self.sampler.start()

    def stop(self) -> None:
        self.telemetry.stop()
        if self.sampler is not None:
            self.sampler.stop()

    @property
    def phases(self):
        return self.telemetry.phases

    def energy(self, start: float, end: float, label: str = "") -> IntervalEnergy | None:
        """Energy over a wall-clock interval; waits briefly for the sample that closes it."""
        if self.sampler is None or end <= start:
            return None
        deadline = time.time() + max(0.25, 3 * self.sampler.interval)
        while time.time() < deadline and not (self._samples and self._samples[-1].t >= end):
            time.sleep(min(0.02, self.sampler.interval or 0.02))
        return attribute(list(self._samples), [(label, start, end)])[0]
