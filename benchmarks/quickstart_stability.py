"""Is the quickstart's accuracy stable? Its experiment file, in process, over partition seeds.

Reads an experiment file (default ``experiments/quickstart.toml``) with htfl's own loader and
runs its method's real client and server sides in this process (no Flower), each client built
as the device runtime builds it: client i is the i-th device of ``[devices] classes`` with that
class's architecture, its shard of ``[data]``'s partition, ``[training]``'s settings and the
seed ``seed + i``. With the file's own seed the curve equals the local fleet's
(``htfl run FILE --local-fleet N``) round for round, so this measures the experiment and the
fleet measures the testbed. After each round every client receives the server's download and
evaluates, as the round loop's evaluation does.

Per seed: final accuracy, last-5-round mean and spread (max - min of the sample-weighted mean
accuracy), and the weakest device over the last five rounds (lowest single accuracy, its
architecture and round). ``--param`` overrides a method parameter (e.g. the file's choice
against the module default: ``--param tau=100 --param server_learning_rate=0.05``).

Usage: python -m benchmarks.quickstart_stability [FILE] [--seeds 0,1,2] [--rounds R]
    [--param key=value] [--curve]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from benchmarks.in_process import sample_weighted
from htfl.algorithms import get_method
from htfl.algorithms.base import ClientSide
from htfl.datasets import client_shard
from htfl.models import build_model
from htfl.workstation.config.experiment import Experiment, load_experiment
from tests.support.rounds import evaluate_clients, run_round


def make_clients(exp: Experiment, params: object, seed: int) -> list[ClientSide]:
    method = get_method(exp.algorithm.name)
    classes = [c for c, n in exp.devices.classes.items() for _ in range(n)]
    clients = []
    for i, device_class in enumerate(classes):
        shard = client_shard(
            exp.data.dataset,
            exp.data.partition_spec(),
            len(classes),
            i,
            seed,
            exp.data.train_fraction,
        )
        torch.manual_seed(seed)
        arch = exp.models.arch_for(device_class, i)
        model = build_model(arch, shard.input_shape, shard.num_classes, exp.models.feature_dim)
        clients.append(method.client(model, shard, exp.training, params, seed + i))
    return clients


def run(exp: Experiment, params: object, seed: int, rounds: int) -> tuple[list, np.ndarray]:
    """The mean accuracy per round and every device's accuracy per round (rounds x devices)."""
    clients = make_clients(exp, params, seed)
    num_classes = clients[0].model.num_classes
    server = get_method(exp.algorithm.name).server(
        params, num_classes, exp.models.feature_dim, seed=seed
    )
    curve, per_device = [], []
    for _ in range(rounds):
        run_round(server, clients)
        accs = [r.accuracy for r in evaluate_clients(server, clients)]
        curve.append(sample_weighted(accs, clients))
        per_device.append(accs)
    return curve, np.array(per_device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", nargs="?", default="experiments/quickstart.toml")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rounds", type=int, default=0, help="default: the file's rounds")
    parser.add_argument("--param", action="append", default=[], help="key=value (JSON value)")
    parser.add_argument("--curve", action="store_true", help="print every round of each seed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    exp = load_experiment(args.experiment)
    overrides = {}
    for item in args.param:
        key, value = item.split("=", 1)
        overrides[key] = json.loads(value)
    file_params = {f: getattr(exp.algorithm_params, f) for f in vars(exp.algorithm_params)}
    params = get_method(exp.algorithm.name).params(**{**file_params, **overrides})
    rounds = args.rounds or exp.experiment.rounds
    classes = [c for c, n in exp.devices.classes.items() for _ in range(n)]
    archs = [exp.models.arch_for(c, i) for i, c in enumerate(classes)]
    print(
        f"# {args.experiment} in process: {exp.algorithm.name}, {rounds} rounds, devices "
        f"{', '.join(f'{c}={a}' for c, a in zip(classes, archs, strict=True))}; overrides "
        f"{overrides or '-'}; {platform.machine()}, Python {platform.python_version()}\n"
    )
    print("| seed | final | last-5 mean | last-5 spread | weakest device (last 5) |")
    print("|---:|---:|---:|---:|---|")
    started = time.time()
    for seed in (int(s) for s in args.seeds.split(",")):
        curve, per_device = run(exp, params, seed, rounds)
        last5, tail = curve[-5:], per_device[-5:]
        r, d = np.unravel_index(int(tail.argmin()), tail.shape)
        weakest = f"{tail[r, d]:.2f} ({classes[d]} {archs[d]}, round {rounds - len(tail) + r + 1})"
        spread = max(last5) - min(last5)
        print(
            f"| {seed} | {curve[-1]:.3f} | {np.mean(last5):.3f} | {spread:.3f} | {weakest} |",
            flush=True,
        )
        if args.curve:
            print(f"<!-- seed {seed} mean per round: {' '.join(f'{a:.3f}' for a in curve)} -->")
            for j, name in enumerate(archs):
                row = " ".join(f"{a:.2f}" for a in per_device[:, j])
                print(f"<!-- seed {seed} {classes[j]} {name}: {row} -->")
    print(f"\n{time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
