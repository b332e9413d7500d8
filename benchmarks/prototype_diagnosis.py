"""Why FedProto trails Local on the accuracy benchmark's split: inference rule and margin.

Runs Local and FedProto in process (real client and server sides, no Flower) on the exact
split and settings of ``benchmarks/algorithms.py`` (digits, Dirichlet 0.1 over 20 clients,
seed 0, cnn4/resnet4/resnet6/resnet8 five clients each, d = 64, SGD lr 0.05 momentum 0.9,
batch 10, one epoch, clients seeded like the device runtime seeds them). Every
``--every`` rounds it prints, sample-weighted over the clients' test splits:

* FedProto's accuracy as the method predicts (nearest *global* prototype, as HtFLlib does),
* FedProto's accuracy with each client's own linear head on the same features,
* Local's accuracy (own head, no collaboration),
* the smallest distance between two classes' global prototypes, and the mean over clients of
  the smallest distance between two of their own class prototypes (the "margin" FedTGP's
  paper says averaging heterogeneous prototypes shrinks).

Usage: python -m benchmarks.prototype_diagnosis [--rounds 25] [--every 5] [--lamda 1.0]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from benchmarks.in_process import (
    CLIENTS,
    FEATURE_DIM,
    make_clients,
    sample_weighted,
)
from htfl.algorithms import get_method
from tests.support.rounds import run_round

SEED = 0


def head_accuracy(client) -> float:
    client.model.eval()
    with torch.no_grad():
        scores = client.model(torch.from_numpy(client.shard.test_x))
    return float((scores.argmax(1).numpy() == client.shard.test_y).mean())


def min_class_gap(protos: np.ndarray, present: np.ndarray) -> float:
    held = protos[present > 0]
    if len(held) < 2:
        return float("nan")
    dist = np.linalg.norm(held[:, None] - held[None], axis=-1)
    return float(dist[~np.eye(len(held), dtype=bool)].min())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--lamda", type=float, default=1.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    proto_params = get_method("fedproto").params(lamda=args.lamda)
    proto = make_clients("fedproto", proto_params, SEED)
    local = make_clients("local", get_method("local").params(), SEED)
    server = get_method("fedproto").server(proto_params, 10, FEATURE_DIM, seed=SEED)
    print(
        f"# FedProto vs Local in process: digits Dirichlet 0.1, {CLIENTS} clients, "
        f"lamda {args.lamda}; {platform.machine()}, Python {platform.python_version()}\n"
    )
    print(
        "| round | FedProto (global-prototype inference) | FedProto (own head) | Local "
        "| min gap, global prototypes | mean min gap, client prototypes |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for rnd in range(1, args.rounds + 1):
        uploads = run_round(server, proto)
        for client in local:
            client.train()
        if rnd % args.every and rnd != args.rounds:
            continue
        glob = server.global_payload()
        for client in proto:
            client.receive(glob)
        as_method = sample_weighted([c.evaluate().accuracy for c in proto], proto)
        own_head = sample_weighted([head_accuracy(c) for c in proto], proto)
        local_acc = sample_weighted([c.evaluate().accuracy for c in local], local)
        global_gap = min_class_gap(glob["prototypes"], glob["counts"])
        client_gaps = [min_class_gap(u.payload["prototypes"], u.payload["counts"]) for u in uploads]
        print(
            f"| {rnd} | {as_method:.4f} | {own_head:.4f} | {local_acc:.4f} "
            f"| {global_gap:.3f} | {np.nanmean(client_gaps):.3f} |"
        )
    print(f"\n{time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
