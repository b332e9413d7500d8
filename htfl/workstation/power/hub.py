"""The power hub: meters the workstation reads itself, on behalf of the devices they measure.

A lab reads many meters on the bench - USB and Bluetooth UM meters, a SCPI analyser, smart
plugs on the boards' supplies - so that measuring costs the device nothing and boards without a
meter port are covered. The inventory marks such a meter ``read_by: workstation``; the hub
opens each one with the same drivers and samplers the agent uses, tags every sample with the
device the meter measures, keeps a bounded history per device to price rounds with
(:meth:`PowerHub.energy`, the same :func:`~htfl.device.power.energy.attribute` the agent uses;
its clock *is* the server's, so the offset is zero), appends every sample to the run's traces
(:class:`~htfl.workstation.power.traces.TraceWriter`) and exports the streams to Prometheus
(:class:`~htfl.device.power.exporter.PowerCollector`, labelled like the devices' own).

``htfl power hub`` runs one standalone; the ServerApp runs one for the run's devices when the
experiment names an inventory under ``[power]``.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from htfl.device.power.config import MeterSpec, make_sampler
from htfl.device.power.energy import IntervalEnergy, attribute
from htfl.device.power.meter import PowerSample
from htfl.device.power.sampler import Sampler
from htfl.workstation.power.traces import TraceWriter

log = logging.getLogger(__name__)

HISTORY = 200_000  # samples kept per device for pricing (at 7 S/s, about 8 hours)


class PowerHub:
    """Samplers for the workstation-read meters among ``specs`` (others are ignored)."""

    def __init__(
        self,
        specs: Mapping[str, MeterSpec],
        traces: TraceWriter | None = None,
        devices: Sequence[str] | None = None,
    ) -> None:
        self.traces = traces
        self.specs = {
            d: s for d, s in specs.items() if s.on_workstation and (devices is None or d in devices)
        }
        self.samplers: dict[str, Sampler] = {}
        self._history: dict[str, collections.deque[PowerSample]] = {}
        for device, spec in sorted(self.specs.items()):
            self._history[device] = collections.deque(maxlen=HISTORY)
            self.samplers[device] = make_sampler(spec, on_sample=self._keeper(device, spec))

    def _keeper(self, device: str, spec: MeterSpec) -> Callable[[PowerSample], None]:
        history = self._history[device]
        traces = self.traces

        def keep(sample: PowerSample) -> None:
            history.append(sample)
            if traces is not None:
                traces.append(
                    device,
                    [(sample.t, sample.watts, sample.volts, sample.amps)],
                    spec.source,
                    spec.scope,
                )

        return keep

    @property
    def devices(self) -> list[str]:
        return sorted(self.samplers)

    def start(self) -> PowerHub:
        for sampler in self.samplers.values():
            sampler.start()
        return self

    def stop(self) -> None:
        for sampler in self.samplers.values():
            sampler.stop()
        if self.traces is not None:
            self.traces.close()

    def __enter__(self) -> PowerHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def energy(
        self, device: str, spans: Sequence[tuple[str, float, float]]
    ) -> list[IntervalEnergy] | None:
        """Energy of ``device`` over each ``(label, start, end)`` (server clock), or None.

        Waits briefly for the sample that closes the last span, as the agent does.
        """
        sampler = self.samplers.get(device)
        if sampler is None or not spans:
            return None
        history = self._history[device]
        end = max(e for _, _, e in spans)
        period = max(sampler.interval, sampler.meter.nominal_period or 0.0)
        deadline = time.time() + max(0.25, 3 * period)
        while time.time() < deadline and not (history and history[-1].t >= end):
            time.sleep(0.02)
        return attribute(list(history), list(spans))
