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

import numpy as np
from flwr.app import RecordDict

from htfl import protocol
from htfl.device.power.energy import IntervalEnergy, attribute
from htfl.device.power.exporter import PowerCollector
from htfl.device.power.meter import PowerSample
from htfl.device.telemetry import DeviceTelemetry

log = logging.getLogger(__name__)

#: Samples kept for per-message energy (at 10 Hz, about 5.5 hours).
SAMPLE_HISTORY = 200_000


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


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
        metrics_host: str = "127.0.0.1",
        meter: dict[str, Any] | None = None,
        telemetry_rate_hz: float = 1.0,
    ) -> None:
        self.device = device
        self.metrics_port = metrics_port
        self.metrics_host = metrics_host
        self.telemetry = DeviceTelemetry(device, device_class, rate_hz=telemetry_rate_hz)
        self._samples: collections.deque[PowerSample] = collections.deque(maxlen=SAMPLE_HISTORY)
        #: samples not yet sent to the server (bounded: a device that is never asked drops the
        #: oldest, and the server's trace shows the hole)
        self._unsent: collections.deque[PowerSample] = collections.deque(maxlen=SAMPLE_HISTORY)
        self.sampler = None
        self.meter_scope = ""
        if meter:
            from htfl.device.power.config import MeterSpec, make_sampler

            spec = MeterSpec.from_mapping(meter, device)
            if spec.on_workstation:
                log.info("%s: the meter is read by the workstation (htfl power hub)", device)
            else:
                self.meter_scope = spec.scope
                self.sampler = make_sampler(spec, on_sample=self._on_sample)
                self.telemetry.registry.register(PowerCollector([self.sampler]))

    def _on_sample(self, sample: PowerSample) -> None:
        latest = self._samples[-1] if self._samples else None
        if latest is not None and self._window_means and sample.t > latest.t:
            # a window mean, as a step: the same power at the start of its window too (the
            # trapezoid rule, here and on the server, then gives mean x window exactly)
            start = sample._replace(t=latest.t)
            self._samples.append(start)
            self._unsent.append(start)
        self._samples.append(sample)
        self._unsent.append(sample)

    @property
    def _window_means(self) -> bool:
        return self.sampler is not None and self.sampler.meter.window_means

    def mark(self, wait: float = 0.25) -> None:
        """An interval starts or ends now: a meter of window means samples at this moment,
        and this waits up to ``wait`` seconds for that sample (work started before it would
        be counted in the window before). Other meters sample on their own schedule."""
        if not self._window_means:
            return
        assert self.sampler is not None
        now = time.time()
        self.sampler.sample_now()
        self._wait_for_sample(now, wait, pause=0.001)

    def _sampled_at(self, t: float) -> bool:
        """A sample at or after ``t`` has arrived."""
        return bool(self._samples) and self._samples[-1].t >= t

    def _wait_for_sample(self, t: float, wait: float, pause: float) -> None:
        """Wait up to ``wait`` seconds for a sample at or after ``t``."""
        deadline = time.time() + wait
        while not self._sampled_at(t) and time.time() < deadline:
            time.sleep(pause)

    def meter_facts(self) -> dict[str, str]:
        """What the server records about this device's own meter (``devices.json``)."""
        if self.sampler is None:
            return {}
        return {"meter_source": self.sampler.source, "meter_scope": self.meter_scope}

    def attach_trace(self, content: RecordDict) -> None:
        """Add the samples taken since the last reply to ``content`` (:func:`protocol.set_trace`).

        One float64 row per sample: device-clock time, watts, volts, amps (NaN: not measured).
        The server turns the times into its own clock and appends them to the run's traces.
        """
        if self.sampler is None:
            return
        rows = []
        pop = self._unsent.popleft
        try:
            while True:
                s = pop()
                rows.append((s.t, s.watts, _nan(s.volts), _nan(s.amps)))
        except IndexError:
            pass
        array = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
        protocol.set_trace(content, array)

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
        if self._window_means and not self._sampled_at(end):
            self.sampler.sample_now()  # the sample that closes the interval, now
        pause = 0.002 if self._window_means else min(0.02, self.sampler.interval or 0.02)
        self._wait_for_sample(end, max(0.25, 3 * self.sampler.interval), pause)
        return attribute(list(self._samples), [(label, start, end)])[0]
