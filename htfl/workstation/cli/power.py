"""``htfl power hub`` and ``htfl power energy``: the workstation's power actions.

They join the device's ``htfl power`` group (``probe``) where the workstation is installed.

* ``hub`` reads the meters the inventory marks ``read_by: workstation``, tags each sample
  with the device it measures, serves them on ``/metrics`` like the agents do, and with
  ``--traces DIR`` appends them to ``DIR/power/<device>.csv``. (A run whose experiment names
  the inventory under ``[power]`` runs the same hub inside the ServerApp and prices rounds.)
* ``energy`` recomputes every round's energy from ``results/<id>/power/*.csv`` and prints it
  beside what ``rounds.csv`` recorded; exit 1 when one differs by more than ``--tolerance``.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from pathlib import Path

from htfl.cli import UsageError


def register_actions(actions: argparse._SubParsersAction) -> None:
    hub = actions.add_parser(
        "hub",
        help="read the meters the workstation reads (inventory: read_by: workstation)",
        description="Sample every meter the inventory attaches to the workstation, tag the "
        "samples with the device each measures, serve them on /metrics, and optionally append "
        "them to DIR/power/<device>.csv. Runs until interrupted or for --seconds.",
    )
    hub.add_argument("--inventory", required=True, metavar="FILE", help="inventory file")
    hub.add_argument("--traces", metavar="DIR", help="write DIR/power/<device>.csv (default: no)")
    hub.add_argument("--metrics-port", type=int, default=9466, help="/metrics port (0: any)")
    hub.add_argument("--metrics-host", default="127.0.0.1", help="/metrics address")
    hub.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: never)")
    hub.set_defaults(func=cmd_hub)
    energy = actions.add_parser(
        "energy",
        help="recompute each round's energy from a run's raw power traces",
        description="Recompute every round's energy from RESULTS/power/<device>.csv with the "
        "intervals rounds.csv recorded, and compare. Exit status 1 if any row differs by more "
        "than --tolerance (relative).",
    )
    energy.add_argument("results", metavar="RESULTS", help="a run's results folder")
    energy.add_argument("--tolerance", type=float, default=1e-6, help="relative difference")
    energy.set_defaults(func=cmd_energy)


def cmd_energy(args: argparse.Namespace) -> int:
    from htfl.workstation.power.rounds import recompute
    from htfl.workstation.server.results import ROWS_FILE

    results = Path(args.results)
    if not (results / ROWS_FILE).is_file():
        raise UsageError(f"{results}: no {ROWS_FILE} here (a run's results folder?)")
    rows = recompute(results)
    if not rows:
        print(f"{results}: no priced rows with raw traces (run made before traces were kept?)")
        return 1
    bad = 0
    print(
        f"{'round':>5}  {'device':<16} {'meter':<10} {'scope':<11} {'rounds.csv J':>13} "
        f"{'traces J':>13} {'diff':>9}"
    )
    for r in rows:
        rel = r.difference / max(abs(r.recorded), 1e-12)
        ok = not math.isnan(r.recomputed) and rel <= args.tolerance
        bad += not ok
        print(
            f"{r.round:>5}  {r.device:<16} {r.meter:<10} {r.scope:<11} {r.recorded:>13.6f} "
            f"{r.recomputed:>13.6f} {rel:>9.1e}{'' if ok else '  MISMATCH'}"
        )
    print(f"{len(rows) - bad}/{len(rows)} rows match within {args.tolerance:g}")
    return 1 if bad else 0


def cmd_hub(args: argparse.Namespace) -> int:
    from htfl.device.power.config import MeterSpecError
    from htfl.device.power.exporter import PowerCollector
    from htfl.device.telemetry.exporter import start_exporter
    from htfl.workstation.inventory import InventoryError, load_meter_specs
    from htfl.workstation.power.hub import PowerHub
    from htfl.workstation.power.traces import TraceWriter

    if not Path(args.inventory).is_file():
        raise UsageError(f"--inventory {args.inventory}: no such file")
    try:
        specs = load_meter_specs(args.inventory)
    except (InventoryError, MeterSpecError) as err:
        raise UsageError(f"{args.inventory}: {err}") from None
    traces = TraceWriter(args.traces) if args.traces else None
    hub = PowerHub(specs, traces)
    if not hub.devices:
        raise UsageError(f"{args.inventory}: no htfl_meter says read_by: workstation")
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(PowerCollector(list(hub.samplers.values())))
    try:
        server = start_exporter(args.metrics_port, args.metrics_host, registry)
    except OSError as err:
        raise UsageError(
            f"--metrics-port {args.metrics_port}: cannot serve on {args.metrics_host}: "
            f"{err.strerror or err}"
        ) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    hub.start()
    print(f"power hub: {', '.join(hub.devices)}; /metrics on {args.metrics_host}:{server.port}")
    sys.stdout.flush()
    try:
        stop.wait(args.seconds if args.seconds > 0 else None)
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
        server.close()
    for device, sampler in sorted(hub.samplers.items()):
        print(
            f"{device}: {sampler.samples_total} samples, {sampler.energy_joules:.3f} J, "
            f"{sampler.frame_errors} frame errors, {sampler.gap_count} gaps"
        )
    return 0
