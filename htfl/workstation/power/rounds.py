"""Energy of each round on the server: from the devices' replies and from the hub's meters.

For every ``train``/``evaluate`` reply, :meth:`RunPower.absorb` records in the round's row the
intervals the device spent on the message (``energy_spans``, and ``idle_span`` before the
train message; server clock: device clock minus the offset measured at hello) and appends the
samples the reply carried (``power_trace``) to ``results/<id>/power/<device>.csv``. After the
round, :meth:`RunPower.price_rows` prices the same intervals with the meter the workstation
reads for that device, if there is one (it then wins over the device's own meter: an
external meter is what a lab attaches to measure a board as a whole).

:func:`recompute` does it all again from the files alone: every row's energy from its device's
trace, with the same :func:`~htfl.device.power.energy.attribute` - ``htfl power energy``.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Message
from prometheus_client import CollectorRegistry

from htfl import protocol
from htfl.device.power.config import MeterSpec
from htfl.device.power.energy import attribute
from htfl.device.power.exporter import PowerCollector
from htfl.device.power.meter import PowerSample
from htfl.workstation.power.hub import PowerHub
from htfl.workstation.power.traces import TRACE_DIR, TraceWriter, read_trace
from htfl.workstation.server.results import ClientRoundRow, read_rows
from htfl.workstation.server.selection import Device

log = logging.getLogger(__name__)


def format_spans(spans: Sequence[tuple[float, float]]) -> str:
    return ";".join(f"{start!r}:{end!r}" for start, end in spans)


def parse_spans(text: str) -> list[tuple[float, float]]:
    out = []
    for part in filter(None, text.split(";")):
        start, _, end = part.partition(":")
        out.append((float(start), float(end)))
    return out


class RunPower:
    """Traces and hub pricing for one run (see the module docstring)."""

    def __init__(self, results_dir: str | Path, hub: PowerHub | None = None) -> None:
        self.traces = hub.traces if hub is not None and hub.traces else TraceWriter(results_dir)
        self.hub = hub

    @classmethod
    def start(
        cls, results_dir: str | Path, specs: Mapping[str, MeterSpec], devices: Sequence[str]
    ) -> RunPower:
        """Start the hub for the workstation-read meters of ``devices`` (if any)."""
        traces = TraceWriter(results_dir)
        hub = PowerHub(specs, traces, devices)
        if hub.devices:
            log.info("power hub: reading the meters of %s", ", ".join(hub.devices))
            hub.start()
        return cls(results_dir, hub if hub.devices else None)

    def export_to(self, registry: CollectorRegistry) -> None:
        """Serve the hub's streams beside the server's metrics (labelled like the agents')."""
        if self.hub is not None:
            registry.register(PowerCollector(list(self.hub.samplers.values())))

    def scope_of(self, device: Device) -> str:
        if self.hub is not None and device.name in self.hub.specs:
            return self.hub.specs[device.name].scope
        return str(device.info.get("meter_scope", ""))

    def absorb(self, row: ClientRoundRow, reply: Message, device: Device, train: bool) -> None:
        m = protocol.read_metrics(reply)
        off = device.clock_offset_seconds
        if "busy_start" in m and "busy_end" in m:
            spans = [*parse_spans(row.energy_spans), (m["busy_start"] - off, m["busy_end"] - off)]
            row.energy_spans = format_spans(spans)
            if train and "idle_start" in m:
                row.idle_span = format_spans([(m["idle_start"] - off, m["busy_start"] - off)])
        meter = str(device.info.get("meter_source", ""))
        scope = str(device.info.get("meter_scope", ""))
        if meter and "energy_joules" in m:
            row.energy_meter, row.energy_scope = meter, scope
        samples = protocol.read_trace(reply)
        if samples is None:
            return
        row.power_trace_bytes = (row.power_trace_bytes or 0) + int(samples.nbytes)
        self.traces.append(
            device.name,
            ((t - off, w, v, a) for t, w, v, a in samples.tolist()),
            meter,
            scope,
            flush=True,
        )

    def price_rows(self, rows: Sequence[ClientRoundRow]) -> None:
        """Price the rows of devices the hub measures, from its own samples."""
        if self.hub is None:
            return
        for row in rows:
            spec = self.hub.specs.get(row.device)
            spans = parse_spans(row.energy_spans)
            if spec is None or not spans:
                continue
            idle = parse_spans(row.idle_span)
            labelled = [("busy", s, e) for s, e in spans] + [("idle", s, e) for s, e in idle]
            priced = self.hub.energy(row.device, labelled)
            if priced is None:
                continue
            busy = [p for p in priced if p.label == "busy"]
            row.energy_joules = sum(p.joules for p in busy)
            row.idle_energy_joules = (
                sum(p.joules for p in priced if p.label == "idle") if idle else None
            )
            row.energy_partial = any(p.partial for p in priced)
            row.energy_meter, row.energy_scope = spec.source, spec.scope

    def close(self) -> None:
        if self.hub is not None:
            self.hub.stop()
        self.traces.close()


@dataclass(frozen=True)
class Recomputed:
    round: int
    device: str
    meter: str
    scope: str
    recorded: float
    recomputed: float

    @property
    def difference(self) -> float:
        return abs(self.recorded - self.recomputed)


def _trace_samples(results_dir: Path, device: str) -> dict[str, list[PowerSample]]:
    """The device's trace, split by meter."""
    by_meter: dict[str, list[PowerSample]] = defaultdict(list)
    path = results_dir / TRACE_DIR / f"{device}.csv"
    if path.exists():
        for r in read_trace(path):
            by_meter[r.meter].append(PowerSample(r.t, r.watts, r.volts, r.amps, r.meter))
    return by_meter


def recompute(results_dir: str | Path) -> list[Recomputed]:
    """Every priced row's busy energy, again, from ``power/<device>.csv`` alone."""
    results_dir = Path(results_dir)
    traces: dict[str, dict[str, list[PowerSample]]] = {}
    out = []
    for row in read_rows(results_dir):
        spans = parse_spans(row.get("energy_spans", ""))
        if not spans or not row.get("energy_joules") or not row.get("energy_meter"):
            continue
        device = row["device"]
        if device not in traces:
            traces[device] = _trace_samples(results_dir, device)
        samples = traces[device].get(row["energy_meter"], [])
        joules = (
            sum(p.joules for p in attribute(samples, [("busy", s, e) for s, e in spans]))
            if samples
            else math.nan
        )
        out.append(
            Recomputed(
                int(row["round"]),
                device,
                row["energy_meter"],
                row.get("energy_scope", ""),
                float(row["energy_joules"]),
                joules,
            )
        )
    return out


def for_run(
    inventory: str, source: str, results_dir: str | Path, devices: Sequence[str]
) -> RunPower:
    """The run's :class:`RunPower`: traces always; a hub when ``inventory`` names meters the
    workstation reads for some of ``devices`` (a relative path is taken from the experiment
    file's folder first, then from the current one)."""
    specs: dict[str, MeterSpec] = {}
    if inventory:
        from htfl.workstation.inventory import load_meter_specs

        path = Path(inventory)
        if not path.is_absolute() and source and (Path(source).parent / path).exists():
            path = Path(source).parent / path
        specs = load_meter_specs(str(path))
    return RunPower.start(results_dir, specs, devices)
