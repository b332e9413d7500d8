"""Methods × partition seeds, in process: is an ordering on the accuracy benchmark's split
more than one seed's noise?

The real client and server sides of each method run in this process (no Flower), on the
split and settings of ``benchmarks/algorithms.py`` but with the partition and model seed
varied (``--seeds``). With seed 0 the results equal the fleet run's bit for bit (checked for
Local and FedProto: 0.9306 and 0.9083 after 25 rounds on both), so the fleet measures the
testbed and this script measures the methods. Prints final and last-5-round mean accuracy
(sample-weighted over the clients' test splits) per method and seed, and their means.

Usage: python -m benchmarks.in_process [--methods local,fedproto,fedtgp] [--seeds 0,1,2]
    [--rounds 25] [--param fedtgp.tau=5]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from htfl.algorithms import get_method
from htfl.algorithms.base import ClientSide, TrainSettings
from htfl.datasets import PartitionSpec, client_shard
from htfl.models import build_model
from tests.support.rounds import evaluate_clients, run_round

#: The accuracy benchmark's split and settings (experiments/algorithms/*.toml).
ARCHS = ("cnn4", "resnet4", "resnet6", "resnet8")
SETTINGS = TrainSettings(local_epochs=1, batch_size=10, learning_rate=0.05, momentum=0.9)
SPEC = PartitionSpec("dirichlet", alpha=0.1, min_samples=10)
CLIENTS, FEATURE_DIM = 20, 64


def make_clients(name: str, params, seed: int, archs: tuple[str, ...] = ARCHS) -> list[ClientSide]:
    """The benchmark's 20 clients, built and seeded the way the device runtime builds them;
    architectures in equal shares by client index (one for a homogeneous method)."""
    method = get_method(name)
    clients = []
    for i in range(CLIENTS):
        shard = client_shard("digits", SPEC, CLIENTS, i, seed)
        torch.manual_seed(seed)
        arch = archs[0] if method.homogeneous else archs[i * len(archs) // CLIENTS]
        model = build_model(arch, shard.input_shape, shard.num_classes, FEATURE_DIM)
        clients.append(method.client(model, shard, SETTINGS, params, seed + i))
    return clients


def sample_weighted(values: list[float], clients: list[ClientSide]) -> float:
    """Sample-weighted mean over the clients' test splits (how the round loop reports it)."""
    sizes = np.array([len(c.shard.test_y) for c in clients])
    return float(np.dot(values, sizes) / sizes.sum())


def run(name: str, params, seed: int, rounds: int, archs: tuple[str, ...] = ARCHS) -> list[float]:
    clients = make_clients(name, params, seed, archs)
    server = get_method(name).server(params, 10, FEATURE_DIM, seed=seed)
    curve = []
    for _ in range(rounds):
        run_round(server, clients)
        accs = [r.accuracy for r in evaluate_clients(server, clients)]
        curve.append(sample_weighted(accs, clients))
    return curve


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="local,fedproto,fedtgp")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--param", action="append", default=[], help="method.key=value")
    parser.add_argument("--curve", action="store_true", help="also print every round's accuracy")
    parser.add_argument("--archs", default=",".join(ARCHS), help="architectures, in equal shares")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides: dict[str, dict] = {}
    for item in args.param:
        key, value = item.split("=", 1)
        method, field = key.split(".", 1)
        overrides.setdefault(method, {})[field] = json.loads(value)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        f"# in process: digits Dirichlet 0.1, {CLIENTS} clients, {args.rounds} rounds, "
        f"archs {args.archs}, overrides {overrides or '-'}; "
        f"{platform.machine()}, Python {platform.python_version()}\n"
    )
    columns = " | ".join(f"seed {s} final / last-5" for s in seeds)
    print(f"| method | {columns} | mean last-5 |")
    print("|---|" + "---:|" * (len(seeds) + 1))
    started = time.time()
    for name in args.methods.split(","):
        params = get_method(name).params(**overrides.get(name, {}))
        cells, last5 = [], []
        for seed in seeds:
            curve = run(name, params, seed, args.rounds, tuple(args.archs.split(",")))
            last5.append(float(np.mean(curve[-5:])))
            cells.append(f"{curve[-1]:.4f} / {last5[-1]:.4f}")
        print(f"| {name} | " + " | ".join(cells) + f" | {np.mean(last5):.4f} |", flush=True)
        if args.curve:
            print(f"<!-- {name}, last seed, per round: {[round(a, 4) for a in curve]} -->")
    print(f"\n{time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
