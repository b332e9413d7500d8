"""Accuracy of every method on one partition, through the real local fleet.

Runs ``experiments/algorithms/<entry>.toml`` for every registered method (and the variants in
``VARIANTS``), one after the other, on ONE local fleet (a SuperLink and 20 agents as processes,
started once): digits, Dirichlet alpha = 0.1 over 20 clients, seed 0, four architectures (cnn4,
resnet4, resnet6, resnet8, five clients each, d = 64; FedAvg, being homogeneous, trains cnn4
everywhere), SGD lr 0.05 with momentum 0.9, batch 10, one local epoch. Each experiment is
submitted through Flower's Control API exactly as ``htfl run`` does, and its results land in
``<results>/<stamp>/<experiment id>/``. Prints one table: the sample-weighted mean test
accuracy after the last round, its mean over the last five rounds and its best, mean bytes per
client per round (up and down, as the Grid counts them in ``rounds.csv``), and wall time.

mobilenet_v2 is left out: on 8x8 digits its last stages run at 1x1, BatchNorm sees ~10 values
per channel per batch, and a client's eval-mode features reached norms of ~1000 (others: 1-10),
which wrecked every average it took part in (see docs/algorithms.md).

FedKTL needs a generator file: unless ``--generator`` names one, the untrained example
generator is written to ``<results>/example-generator.pt`` (no pre-trained weights can be
downloaded here, so FedKTL's knowledge transfer is only exercised, not effective).

Usage:
    python -m benchmarks.algorithms [--rounds 40] [--methods fd,fedproto,...]
        [--results results/bench-algorithms] [--write-experiments]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tomllib
from dataclasses import replace
from pathlib import Path

from htfl.algorithms import METHODS, fedktl
from htfl.workstation.config.experiment import experiment_from_dict
from htfl.workstation.local_fleet import (
    LocalFleet,
    expand_selection,
    interrupt_on_signals,
)
from htfl.workstation.server.results import read_rows
from htfl.workstation.server.submit import SuperLinkControl

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments" / "algorithms"
CLASSES = {"jetson-nano": 5, "orange-pi-5b": 5, "jetson-orin-nano": 5, "jetson-xavier-nx": 5}
ARCHS = {
    "jetson-nano": "cnn4",
    "orange-pi-5b": "resnet4",
    "jetson-orin-nano": "resnet6",
    "jetson-xavier-nx": "resnet8",
}
#: Method parameters that differ from the module defaults.
PARAMS: dict[str, dict] = {
    "fedktl": {"generator_path": "results/bench-algorithms/example-generator.pt"},
}
#: Extra entries: name -> (method, parameters). FedTGP's margin cap tau = 100 is far above this
#: federation's feature scale (class gaps of 1-10 at d = 64), so its adaptive margin feeds back
#: into the feature norms round after round; tau = 5 bounds it (see docs/algorithms.md).
VARIANTS: dict[str, tuple[str, dict]] = {
    "fedtgp-tau5": ("fedtgp", {"lamda": 1.0, "tau": 5.0}),
}
ROUNDS = 40
#: Seconds between an agent's SuperLink polls while active. The agent's default (50 ms) is for a
#: few devices: 20 agents polling at 20 Hz kept both cores busy and a round took ~50 s.
POLL_SECONDS = 0.5


def entries() -> list[str]:
    return sorted([*METHODS, *VARIANTS])


def method_of(entry: str) -> tuple[str, dict]:
    return VARIANTS.get(entry, (entry, PARAMS.get(entry, {})))


def experiment_text(entry: str) -> str:
    """The experiment file of one entry (what --write-experiments writes)."""
    name, params = method_of(entry)
    homogeneous = METHODS[name].homogeneous
    archs = {c: "cnn4" for c in CLASSES} if homogeneous else ARCHS
    lines = [
        f"# {entry} on the accuracy benchmark's split (benchmarks/algorithms.py).",
        "# digits, Dirichlet alpha 0.1 over 20 clients, 4 architectures"
        + (" (FedAvg: cnn4 everywhere)." if homogeneous else "."),
        "[experiment]",
        f'id = "bench-{entry}"',
        f"rounds = {ROUNDS}",
        "seed = 0",
        "eval_every = 1",
        "",
        "[algorithm]",
        f'name = "{name}"',
        "[algorithm.params]",
        *(f"{k} = {json.dumps(v)}" for k, v in params.items()),
        "",
        "[data]",
        'dataset = "digits"',
        'partition = "dirichlet"',
        "alpha = 0.1",
        "min_samples = 10",
        "",
        "[training]",
        "local_epochs = 1",
        "batch_size = 10",
        "learning_rate = 0.05",
        "momentum = 0.9",
        "",
        "[devices]",
        "classes = { " + ", ".join(f'"{c}" = {n}' for c, n in CLASSES.items()) + " }",
        "deadline_seconds = 600",
        f"min_replies = {sum(CLASSES.values())}",
        "",
        "[models]",
        "feature_dim = 64",
        *(f'"{c}" = "{a}"' for c, a in archs.items()),
    ]
    return "\n".join(lines) + "\n"


def write_experiments() -> None:
    EXPERIMENTS.mkdir(parents=True, exist_ok=True)
    for entry in entries():
        (EXPERIMENTS / f"{entry}.toml").write_text(experiment_text(entry))
        print(f"wrote {EXPERIMENTS / entry}.toml")


def load(entry: str, rounds: int | None, generator: Path, per_class: int | None = None):
    path = EXPERIMENTS / f"{entry}.toml"
    raw = tomllib.loads(path.read_text())
    if rounds is not None:
        raw["experiment"]["rounds"] = rounds
    if per_class is not None:  # a smaller federation (the smoke test's toy size)
        raw["devices"]["classes"] = {c: per_class for c in CLASSES}
        raw["devices"]["min_replies"] = per_class * len(CLASSES)
    if method_of(entry)[0] == "fedktl":
        raw["algorithm"]["params"]["generator_path"] = str(generator)
    return experiment_from_dict(raw, path)


def weighted(rows: list[dict]) -> float | None:
    scored = [r for r in rows if r["test_accuracy"] not in ("", None) and r["num_test"]]
    total = sum(int(r["num_test"]) for r in scored)
    if not total:
        return None
    return sum(float(r["test_accuracy"]) * int(r["num_test"]) for r in scored) / total


def mean_int(rows: list[dict], key: str) -> float:
    values = [int(r[key]) for r in rows if r[key] not in ("", None)]
    return sum(values) / len(values) if values else 0.0


def summarise(name: str, out: Path, summary: dict) -> dict:
    rows = read_rows(out) if (out / "rounds.csv").exists() else []
    by_round: dict[int, list[dict]] = {}
    for r in rows:
        by_round.setdefault(int(r["round"]), []).append(r)
    accuracies = [a for rnd in sorted(by_round) if (a := weighted(by_round[rnd])) is not None]
    return {
        "method": name,
        "status": summary.get("status"),
        "error": summary.get("error"),
        "rounds": len(by_round),
        "accuracy": accuracies,
        "final": accuracies[-1] if accuracies else None,
        "last5": sum(accuracies[-5:]) / len(accuracies[-5:]) if accuracies else None,
        "best": max(accuracies) if accuracies else None,
        "up": mean_int(rows, "bytes_up"),
        "down": mean_int(rows, "bytes_down"),
        "wall": summary.get("wall_seconds"),
    }


def print_table(results: list[dict], rounds: int, clients: int) -> None:
    print()
    print(
        f"# digits, Dirichlet 0.1, {clients} clients, {rounds} rounds; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print()
    print(
        "| method | final acc | last-5 mean | best acc | up B/client/round "
        "| down B/client/round | wall s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        if r["final"] is None:
            print(f"| {r['method']} | failed: {r['error']} | | | | | |")
            continue
        wall = f"{r['wall']:.0f}" if r["wall"] else "-"
        print(
            f"| {r['method']} | {r['final']:.4f} | {r['last5']:.4f} | {r['best']:.4f} | "
            f"{r['up']:,.0f} | {r['down']:,.0f} | {wall} |"
        )


def main() -> int:
    interrupt_on_signals()  # SIGTERM stops the fleet like Ctrl-C does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="override the files' rounds")
    parser.add_argument("--methods", default=",".join(entries()), help="entries, comma-separated")
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "bench-algorithms")
    parser.add_argument("--generator", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=3600.0, help="per method, seconds")
    parser.add_argument(
        "--per-class",
        type=int,
        default=None,
        help="devices per class (default: the files' 5 each; the table then describes that fleet)",
    )
    parser.add_argument("--write-experiments", action="store_true")
    args = parser.parse_args()
    if args.write_experiments:
        write_experiments()
        return 0
    names = [n for n in args.methods.split(",") if n]
    unknown = [n for n in names if n not in entries()]
    if unknown:
        parser.error(f"unknown methods: {unknown}")
    results_root = args.results.resolve()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_root = results_root / stamp
    run_root.mkdir(parents=True)
    generator = args.generator
    if generator is None:
        generator = results_root / "example-generator.pt"
        fedktl.save_generator(fedktl.example_generator(seed=0), generator)
    fleets = 0
    classes = CLASSES if args.per_class is None else {c: args.per_class for c in CLASSES}

    def new_fleet() -> LocalFleet:
        nonlocal fleets
        fleets += 1
        fleet = LocalFleet(
            expand_selection(classes), run_root / f"fleet-logs-{fleets}", poll_seconds=POLL_SECONDS
        )
        fleet.start()
        return fleet

    results = []
    fleet = new_fleet()
    try:
        for name in names:
            exp = load(name, args.rounds, generator.resolve(), args.per_class)
            exp = replace(
                exp, superlink=replace(exp.superlink, address=fleet.address, insecure=True)
            )
            out = run_root / exp.id
            out.mkdir(parents=True)
            control = SuperLinkControl(exp)
            try:
                started = time.time()
                control.submit(exp, out)
                summary = fleet.wait_for_run(out, args.timeout, poll=1.0)
            finally:
                control.close()
            row = summarise(name, out, summary)
            results.append(row)
            final = "-" if row["final"] is None else f"{row['final']:.4f}"
            print(
                f"{name}: {row['status']} in {time.time() - started:.0f} s, final {final}",
                flush=True,
            )
            (run_root / "table.json").write_text(json.dumps(results, indent=1))
            if fleet.check_alive():  # reported in the row; the next method gets a whole fleet
                print(f"{name}: {summary.get('error')}; restarting the fleet", flush=True)
                fleet.stop()
                fleet = new_fleet()
    finally:
        fleet.stop()
    print_table(results, args.rounds or ROUNDS, sum(classes.values()))
    print(f"\nresults: {run_root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
