"""Accuracy of every method on one partition, through the real local fleet.

Runs ``experiments/algorithms/<method>.toml`` for every registered method, one after the other,
on ONE local fleet (a SuperLink and 20 agents as processes, started once): digits, Dirichlet
alpha = 0.1 over 20 clients, seed 0, five architectures (cnn4, resnet4, resnet6, resnet8,
mobilenet_v2 at d = 64; FedAvg, being homogeneous, trains cnn4 everywhere). Each experiment is
submitted through Flower's Control API exactly as ``htfl run`` does, and its results land in
``<results>/<experiment id>/``. Prints one table: final and best sample-weighted mean test
accuracy, mean bytes per client per round (up and down, as ``protocol.content_bytes`` measures
them), and wall time.

FedKTL needs a generator file: unless ``--generator`` names one, the untrained example
generator is written to ``<results>/example-generator.pt`` (no pre-trained weights can be
downloaded here, so FedKTL's knowledge transfer is only exercised, not effective).

Usage:
    python benchmarks/algorithms.py [--rounds 40] [--methods fd,fedproto,...]
        [--results results/bench-algorithms] [--write-experiments]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import tomllib
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from htfl.algorithms import METHODS, fedktl  # noqa: E402
from htfl.config.experiment import experiment_from_dict  # noqa: E402
from htfl.server.results import read_rows  # noqa: E402
from htfl.server.submit import SuperLinkControl  # noqa: E402
from htfl.sim.local_fleet import LocalFleet, expand_selection  # noqa: E402

EXPERIMENTS = ROOT / "experiments" / "algorithms"
CLASSES = {
    "jetson-nano": 4,
    "orange-pi-5b": 4,
    "jetson-orin-nano": 4,
    "jetson-xavier-nx": 4,
    "lattepanda-delta-3": 4,
}
ARCHS = {
    "jetson-nano": "cnn4",
    "orange-pi-5b": "resnet4",
    "jetson-orin-nano": "resnet6",
    "jetson-xavier-nx": "resnet8",
    "lattepanda-delta-3": "mobilenet_v2",
}
#: Method parameters that differ from the module defaults, and why.
PARAMS: dict[str, dict] = {
    "fedtgp": {"lamda": 1.0},  # as experiments/quickstart.toml
    "fedktl": {"generator_path": "results/bench-algorithms/example-generator.pt"},
}
ROUNDS = 40


def experiment_text(name: str) -> str:
    """The experiment file of one method (what --write-experiments writes)."""
    homogeneous = METHODS[name].homogeneous
    archs = {c: "cnn4" for c in CLASSES} if homogeneous else ARCHS
    params = PARAMS.get(name, {})
    lines = [
        f"# {name} on the accuracy benchmark's split (benchmarks/algorithms.py).",
        "# digits, Dirichlet alpha 0.1 over 20 clients, 5 architectures"
        + (" (FedAvg: cnn4 everywhere)." if homogeneous else "."),
        "[experiment]",
        f'id = "bench-{name}"',
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
    for name in sorted(METHODS):
        (EXPERIMENTS / f"{name}.toml").write_text(experiment_text(name))
        print(f"wrote {EXPERIMENTS / name}.toml")


def load(name: str, rounds: int | None, generator: Path):
    path = EXPERIMENTS / f"{name}.toml"
    raw = tomllib.loads(path.read_text())
    if rounds is not None:
        raw["experiment"]["rounds"] = rounds
    if name == "fedktl":
        raw["algorithm"]["params"]["generator_path"] = str(generator)
    return experiment_from_dict(raw, path)


def wait(out: Path, fleet: LocalFleet, timeout: float) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        summary = out / "summary.json"
        if summary.exists():
            data = json.loads(summary.read_text())
            if data.get("status") != "running":
                return data
        if dead := fleet.check_alive():
            return {"status": "failed", "error": f"fleet processes exited: {dead}"}
        time.sleep(1.0)
    return {"status": "failed", "error": f"timed out after {timeout:.0f} s"}


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
        "final": accuracies[-1] if accuracies else None,
        "best": max(accuracies) if accuracies else None,
        "up": mean_int(rows, "bytes_up"),
        "down": mean_int(rows, "bytes_down"),
        "wall": summary.get("wall_seconds"),
    }


def print_table(results: list[dict], rounds: int) -> None:
    print()
    print(
        f"# digits, Dirichlet 0.1, 20 clients, {rounds} rounds; "
        f"{platform.machine()}, {platform.python_version()}"
    )
    print()
    print("| method | final acc | best acc | up B/client/round | down B/client/round | wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        if r["final"] is None:
            print(f"| {r['method']} | failed: {r['error']} | | | | |")
            continue
        wall = f"{r['wall']:.0f}" if r["wall"] else "-"
        print(
            f"| {r['method']} | {r['final']:.4f} | {r['best']:.4f} | {r['up']:,.0f} | "
            f"{r['down']:,.0f} | {wall} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="override the files' rounds")
    parser.add_argument("--methods", default=",".join(sorted(METHODS)))
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "bench-algorithms")
    parser.add_argument("--generator", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=3600.0, help="per method, seconds")
    parser.add_argument("--write-experiments", action="store_true")
    args = parser.parse_args()
    if args.write_experiments:
        write_experiments()
        return 0
    names = [n for n in args.methods.split(",") if n]
    unknown = [n for n in names if n not in METHODS]
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
    fleet = LocalFleet(expand_selection(CLASSES), run_root / "fleet-logs")
    results = []
    try:
        fleet.start()
        for name in names:
            exp = load(name, args.rounds, generator.resolve())
            exp = replace(
                exp, superlink=replace(exp.superlink, address=fleet.address, insecure=True)
            )
            out = run_root / exp.id
            out.mkdir(parents=True)
            control = SuperLinkControl(exp)
            try:
                started = time.time()
                control.submit(exp, out)
                summary = wait(out, fleet, args.timeout)
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
    finally:
        fleet.stop()
    print_table(results, args.rounds or ROUNDS)
    print(f"\nresults: {run_root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
