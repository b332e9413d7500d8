"""What a fleet round costs beyond the devices' own work: N agents, FedProto, cnn4, digits.

Starts a local fleet (a SuperLink and N ``htfl agent`` processes on loopback, the same launcher
as ``htfl run --local-fleet``), runs one FedProto experiment on it through Flower's Control API
as ``htfl run`` submits it, and prints per round: the round's wall time (the ServerApp's
``round_seconds``: train, aggregate, evaluate), the slowest device's own train + evaluate
seconds, and their difference, the pure overhead (message transfer, polling, serialisation,
aggregation). Also the CPU seconds per round the SuperLink (with the ServerApp it starts) and
the agents burned (psutil) in the steady rounds, from the end of round 1 to the end of the
run (before it, the agents import torch and build their data and models), so a change can be
told apart from the machine's load, which is printed too.

Usage: python -m benchmarks.fleet_round [--agents 20] [--rounds 5] [--poll 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import psutil

from htfl.workstation.config.experiment import experiment_from_dict
from htfl.workstation.local_fleet import LocalFleet, expand_selection, interrupt_on_signals
from htfl.workstation.server.results import read_rows
from htfl.workstation.server.submit import SuperLinkControl

CLASSES = ("jetson-nano", "orange-pi-5b", "jetson-orin-nano", "jetson-xavier-nx")


def experiment(agents: int, rounds: int) -> dict:
    counts = {c: agents // len(CLASSES) for c in CLASSES}
    for c in CLASSES[: agents % len(CLASSES)]:
        counts[c] += 1
    counts = {c: n for c, n in counts.items() if n}
    return {
        "experiment": {"id": f"fleet-round-{agents}", "rounds": rounds, "seed": 0, "eval_every": 1},
        "algorithm": {"name": "fedproto"},
        "data": {"dataset": "digits", "partition": "dirichlet", "alpha": 0.1, "min_samples": 10},
        "training": {"local_epochs": 1, "batch_size": 10, "learning_rate": 0.05, "momentum": 0.9},
        "devices": {
            "classes": counts,
            "deadline_seconds": 600,
            "min_replies": agents,
            # N agents importing torch at once on a small machine take minutes to connect
            "wait_for_devices_seconds": 900,
        },
        "models": {"feature_dim": 64, **{c: "cnn4" for c in counts}},
    }


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds of these processes and their descendants, living and reaped (a stock
    SuperNode's ClientApp process per message is gone by the time it is read)."""
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            continue
    return total


def first_round_over(progress: Path, fleet: LocalFleet, end: float) -> None:
    """Until round 1 has ended (or the run has, a fleet process exited, or ``end`` passed:
    the wait for the run then says which)."""
    while time.monotonic() < end and not fleet.check_alive():
        text = progress.read_text() if progress.exists() else ""
        if '"event": "round"' in text or '"event": "end"' in text:
            return
        time.sleep(0.5)


def main() -> int:
    interrupt_on_signals()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--poll", type=float, default=0.5, help="agents' SuperLink poll interval while active (s)"
    )
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="htfl-bench-fleet-") as tmp:
        work = Path(tmp)
        raw = experiment(args.agents, args.rounds)
        fleet = LocalFleet(
            expand_selection(raw["devices"]["classes"]), work / "fleet", poll_seconds=args.poll
        )
        fleet.start()
        try:
            exp = experiment_from_dict(raw, str(work / "fleet-round.toml"))
            exp = replace(exp, superlink=replace(exp.superlink, address=fleet.address))
            out = work / exp.id
            out.mkdir()
            control = SuperLinkControl(exp)
            sl_pid = fleet.procs["superlink"].pid
            agent_pids = [p.pid for n, p in fleet.procs.items() if n != "superlink"]
            try:
                control.submit(exp, out)
                end = time.monotonic() + args.timeout
                first_round_over(out / "progress.jsonl", fleet, end)
                cpu0 = (cpu_seconds([sl_pid]), cpu_seconds(agent_pids), time.time())
                summary = fleet.wait_for_run(out, max(1.0, end - time.monotonic()), poll=0.5)
                cpu1 = (cpu_seconds([sl_pid]), cpu_seconds(agent_pids), time.time())
            finally:
                control.close()
        finally:
            fleet.stop()
        if summary.get("status") != "finished":
            raise SystemExit(f"run {summary.get('status')}: {summary.get('error')}")
        events = [
            json.loads(line)
            for line in (out / "progress.jsonl").read_text().splitlines()
            if '"round"' in line
        ]
        walls = {e["round"]: e["round_seconds"] for e in events if e.get("event") == "round"}
        device: dict[int, float] = defaultdict(float)
        for r in read_rows(out):
            own = sum(float(r[k]) for k in ("train_seconds", "evaluate_seconds") if r[k])
            device[int(r["round"])] = max(device[int(r["round"])], own)
    overhead = {rnd: walls[rnd] - device[rnd] for rnd in walls}
    print(
        f"# {args.agents} agents on loopback, FedProto, cnn4, digits (Dirichlet 0.1), "
        f"{args.rounds} rounds, agents poll every {args.poll} s while active; "
        f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, load average "
        f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end\n"
    )
    print("| round | round wall s | slowest device train+evaluate s | overhead s |")
    print("|---:|---:|---:|---:|")
    for rnd in sorted(walls):
        print(f"| {rnd} | {walls[rnd]:.2f} | {device[rnd]:.2f} | {overhead[rnd]:.2f} |")
    steady = len(walls) - 1
    if steady:
        print(
            f"\nCPU in rounds 2-{len(walls)} ({cpu1[2] - cpu0[2]:.0f} s): SuperLink+ServerApp "
            f"{(cpu1[0] - cpu0[0]) / steady:.2f} s/round, {args.agents} agents "
            f"{(cpu1[1] - cpu0[1]) / steady:.2f} s/round"
        )
    print(f"fleet_round_overhead_s={statistics.median(overhead.values()):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
