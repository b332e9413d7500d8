"""Render time and peak memory of ``htfl report`` for synthetic results dirs of growing size.

Run: ``.venv/bin/python -m benchmarks.report [--sizes 10x4,200x20,1000x50] [--keep DIR]``

Each size (rounds x devices) is a results dir written with the ServerApp's own writer
(:class:`htfl.workstation.server.results.ResultsStore`: the same columns and encoding as a real
run), with devices of four classes, one device in ten late in a round, evaluation every round.
Each render runs in a fresh interpreter, so the peak resident memory (``ru_maxrss``) is the
report's own; ``render s`` is the time of :func:`htfl.workstation.report.render` alone
(loading, figures in PNG and SVG, the page), ``cli s`` the whole command including Python's
start and imports, and ``cpu s`` the CPU time of the render (user + system): on a shared
machine the wall times grow with the load, the CPU time much less.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from htfl.workstation.server.results import ClientRoundRow, ResultsStore, write_json

CLASSES = ("jetson-nano", "orange-pi-5b", "jetson-orin-nano", "lattepanda-delta-3")

_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from htfl.workstation.report import render
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t1, c1 = time.perf_counter(), cpu()
render([Path(sys.argv[1])], Path(sys.argv[2]))
t2, c2 = time.perf_counter(), cpu()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"import": t1 - t0, "render": t2 - t1, "cpu": c2 - c1, "peak_mib": peak}))
"""


def write_synthetic(directory: Path, rounds: int, devices: int, seed: int = 0) -> Path:
    """A finished run's results dir: ``rounds`` x ``devices`` rows, as the ServerApp writes."""
    rng = random.Random(seed)
    names = [(f"{CLASSES[k % 4]}-{k // 4 + 1:02d}", CLASSES[k % 4]) for k in range(devices)]
    speed = {cls: 1.0 + i for i, cls in enumerate(CLASSES)}
    store = ResultsStore(directory)
    write_json(
        directory / "experiment.json",
        {
            "experiment": {"id": directory.name, "rounds": rounds, "eval_every": 1, "seed": seed},
            "algorithm": {"name": "fedproto", "params": {}},
            "data": {"dataset": "digits", "partition": "iid"},
        },
    )
    t, started = 1.8e9, 1.8e9
    for rnd in range(1, rounds + 1):
        rows = []
        for k, (name, cls) in enumerate(names):
            row = ClientRoundRow(rnd, k, name, cls, "cnn4", k, "ok", round_started=t)
            if rng.random() < 0.1:
                row.status = "late"
            else:
                train = 0.2 * speed[cls] * (0.9 + 0.2 * rng.random())
                row.train_seconds, row.serialise_seconds = train, 0.001
                row.deserialise_seconds, row.download_seconds = 0.001, 0.01
                row.handle_seconds = train + 0.01
                row.round_trip_seconds = row.handle_seconds + 0.05
                row.evaluate_seconds, row.idle_seconds = 0.05, 0.3
                row.bytes_down, row.bytes_up = 4000, 4200
                row.eval_bytes_down, row.eval_bytes_up = 3800, 500
                row.energy_joules, row.idle_energy_joules = 5.0 * train, 1.0
                row.num_train, row.num_test = 450, 150
                row.test_accuracy = min(0.99, 0.1 + 0.8 * (1 - 0.97**rnd) + 0.05 * rng.random())
                row.test_loss = 1.0 - row.test_accuracy
            rows.append(row)
        store.add_rows(rows)
        wait = max((r.round_trip_seconds or 0.0) for r in rows) + 0.1
        t += wait + 0.02
        store.progress(
            event="round",
            round=rnd,
            rounds=rounds,
            answered=sum(r.status == "ok" for r in rows),
            selected=devices,
            round_seconds=wait + 0.02,
            wait_seconds=wait,
            aggregate_seconds=0.01,
            elapsed_seconds=t - started,
            time=t,
        )
    store.close()
    write_json(directory / "summary.json", {"status": "finished", "rounds": rounds})
    return directory


def measure(directory: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(directory), str(directory / "report")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"render of {directory} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["cli"] = wall
    return out


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        rounds, devices = part.lower().split("x")
        sizes.append((int(rounds), int(devices)))
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10x4,200x20,1000x50", help="ROUNDSxDEVICES,...")
    parser.add_argument("--keep", type=Path, default=None, help="write the dirs here, keep them")
    args = parser.parse_args(argv)
    base = args.keep or Path(tempfile.mkdtemp(prefix="htfl-report-bench-"))
    rows = []
    for rounds, devices in parse_sizes(args.sizes):
        directory = write_synthetic(base / f"synthetic-{rounds}x{devices}", rounds, devices)
        csv_mib = (directory / "rounds.csv").stat().st_size / 2**20
        m = measure(directory)
        rows.append((rounds, devices, rounds * devices, csv_mib, m))
    print(
        f"{'rounds':>7} {'devices':>8} {'rows':>7} {'csv MiB':>8} {'render s':>9} "
        f"{'cpu s':>6} {'cli s':>6} {'peak MiB':>9}"
    )
    for rounds, devices, n, csv_mib, m in rows:
        print(
            f"{rounds:>7} {devices:>8} {n:>7} {csv_mib:>8.2f} {m['render']:>9.2f} "
            f"{m['cpu']:>6.2f} {m['cli']:>6.2f} {m['peak_mib']:>9.0f}"
        )
    largest = rows[-1][4]
    print(
        f"report_render_seconds={largest['render']:.2f} report_cpu_seconds={largest['cpu']:.2f} "
        f"report_peak_mib={largest['peak_mib']:.0f}"
    )
    if args.keep is None:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
