"""Virtual clients by the hundred: `htfl run --simulate N` on Flower's simulation runtime (Ray).

For each client count and method, runs ``htfl run EXP`` as a user does (a child process), the
experiment file asking for N virtual clients (``[simulation] clients = N``), on digits (8x8
images, 10 classes; the one 10-class image set that needs no download here), IID over N
clients, cnn4 on every client, four device classes in equal shares, no stragglers (deadline
600 s of modelled time), and prints one table: peak memory of the whole run (the htfl process
and every Ray process it started, RSS summed: shared library pages are counted once per
process, so an upper bound), seconds per round (median of the rounds' wall time), the final
sample-weighted test accuracy, and the same figure from the in-process path (the method's
client and server sides in one process, built and seeded as the device runtime builds them)
for the same seed: the two should agree (the simulation runs the same code); and the bytes a
client would move per round each way (median over the rows; modelled from the virtual
clients' real messages, as every figure of a simulated row is).

1797 digits over 500 clients leave ~3.6 samples per client: a scale test of the runtime, not
of the methods' accuracy.

Usage: python -m benchmarks.simulate [--clients 100,500] [--methods fedavg,fedproto]
    [--rounds 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

from htfl.algorithms import get_method
from htfl.algorithms.base import TrainSettings
from htfl.datasets import PartitionSpec, client_shard
from htfl.models import build_model
from tests.support.rounds import evaluate_round, run_round

CLASSES = ("jetson-nano", "orange-pi-5b", "jetson-orin-nano", "jetson-xavier-nx")
FEATURE_DIM = 64
TRAINING = {"local_epochs": 1, "batch_size": 10, "learning_rate": 0.05, "momentum": 0.9}
SPEC = PartitionSpec("iid", balanced=True, min_samples=2)


def experiment_text(name: str, method: str, clients: int, rounds: int, seed: int) -> str:
    counts = {c: clients // len(CLASSES) for c in CLASSES}
    for c in CLASSES[: clients % len(CLASSES)]:
        counts[c] += 1
    classes = ", ".join(f'"{c}" = {n}' for c, n in counts.items() if n)
    archs = "\n".join(f'"{c}" = "cnn4"' for c, n in counts.items() if n)
    training = "\n".join(f"{k} = {v}" for k, v in TRAINING.items())
    return f"""
[experiment]
id = "{name}"
rounds = {rounds}
eval_every = {rounds}
seed = {seed}
[algorithm]
name = "{method}"
[data]
dataset = "digits"
partition = "iid"
balanced = true
min_samples = {SPEC.min_samples}
[training]
{training}
[devices]
classes = {{ {classes} }}
deadline_seconds = 600
min_replies = {clients}
wait_for_devices_seconds = 600
[models]
feature_dim = {FEATURE_DIM}
{archs}
[simulation]
clients = {clients}
"""


class TreeMemory:
    """Peak summed RSS of a process and all its descendants, sampled every ``interval``."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def simulated(method: str, clients: int, rounds: int, seed: int, work: Path) -> dict:
    name = f"sim-{method}-{clients}"
    path = work / f"{name}.toml"
    path.write_text(experiment_text(name, method, clients, rounds, seed))
    started = time.time()
    with open(work / f"{name}.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "htfl", "run", str(path), "--results", str(work)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        memory = TreeMemory(proc.pid)
        code = proc.wait(timeout=3600)
        peak = memory.stop()
    summary = json.loads((work / name / "summary.json").read_text())
    if code != 0 or summary.get("status") != "finished":
        raise RuntimeError(f"{name}: exit {code}, {summary.get('error')}; see {work / name}.log")
    events = [
        json.loads(line) for line in (work / name / "progress.jsonl").read_text().splitlines()
    ]
    per_round = [e["round_seconds"] for e in events if e.get("event") == "round"]
    with open(work / name / "rounds.csv") as fh:
        rows = list(csv.DictReader(fh))
    modelled = all(r["modelled"] == "True" for r in rows)
    answered = [r for r in rows if r["status"] == "ok"]
    return {
        "peak_gib": peak / 2**30,
        "round_s": statistics.median(per_round),
        "accuracy": summary["final_accuracy"],
        "wall_s": time.time() - started,
        "modelled": modelled,
        "kib_up": statistics.median(int(r["bytes_up"]) for r in answered) / 1024,
        "kib_down": statistics.median(int(r["bytes_down"]) for r in answered) / 1024,
    }


def in_process(method: str, clients: int, rounds: int, seed: int) -> float:
    """The same federation in one process (no Flower): client i holds shard i and a cnn4
    seeded as the device runtime seeds it; final sample-weighted test accuracy."""
    m = get_method(method)
    params = m.params()
    names = {f.name for f in dataclasses.fields(TrainSettings)}
    settings = TrainSettings(**TRAINING, **({"device": "cpu"} if "device" in names else {}))
    built = []
    for i in range(clients):
        shard = client_shard("digits", SPEC, clients, i, seed)
        torch.manual_seed(seed)
        model = build_model("cnn4", tuple(shard.input_shape), shard.num_classes, FEATURE_DIM)
        built.append(m.client(model, shard, settings, params, seed + i))
    server = m.server(params, built[0].shard.num_classes, FEATURE_DIM, seed)
    for _ in range(rounds):
        run_round(server, built)
    return evaluate_round(server, built)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="100,500", help="client counts, comma-separated")
    parser.add_argument("--methods", default="fedavg,fedproto")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="htfl-bench-sim-") as tmp:
        for clients in (int(c) for c in args.clients.split(",")):
            for method in args.methods.split(","):
                row = simulated(method, clients, args.rounds, args.seed, Path(tmp))
                row.update(
                    method=method,
                    clients=clients,
                    reference=in_process(method, clients, args.rounds, args.seed),
                )
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(
        f"\n# digits IID, cnn4, {args.rounds} rounds, seed {args.seed}; {platform.node()} "
        f"{platform.machine()}, {os.cpu_count()} cores, load average {load[0]:.1f} at the "
        f"start, {os.getloadavg()[0]:.1f} at the end; one Ray actor per core\n"
    )
    print(
        "| clients | method | peak RAM GiB (all processes) | s/round | accuracy (simulated) "
        "| accuracy (in process) | all rows modelled | wall s | KiB up/client/round "
        "| KiB down/client/round |"
    )
    print("|---:|---|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['clients']} | {r['method']} | {r['peak_gib']:.2f} | {r['round_s']:.1f} "
            f"| {r['accuracy']:.4f} | {r['reference']:.4f} | {r['modelled']} | {r['wall_s']:.0f} "
            f"| {r['kib_up']:.1f} | {r['kib_down']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
