"""What the trainer process costs: a round trained in the agent's process vs in a trainer
process (``htfl agent --trainer-python``), per architecture and method.

Each row sets up one client (digits, IID, client 0 of 3, seed 0) in a
:class:`htfl.device.trainer.Trainer` in this process, or in a
:class:`htfl.device.remote_trainer.RemoteTrainer` run by ``--python`` (default: this
interpreter), then trains ``--rounds`` rounds, each receiving the previous round's upload as
its global knowledge. Columns: the trainer's start (spawn to ready: the interpreter's imports),
setup, the mean wall time of a train request as the agent sees it, the training itself as the
trainer measured it, their difference (receiving the download, computing the upload and, for
a trainer process, the channel and the process boundary: compare the two rows of a pair), the
upload's bytes, and whether the two kinds of trainer gave the same loss. Setup in this process
reuses the shard a previous row built (same split); a trainer process builds it again.

Usage: python -m benchmarks.trainer_split [--archs cnn4,resnet8] [--methods fedavg,fedproto]
       [--rounds 3] [--python PATH] [--train-fraction 0.75]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from htfl.device.remote_trainer import RemoteTrainer
from htfl.device.trainer import Trainer
from tests.support.device_runtime import SETUP

PARAMS = {"fedproto": {"lamda": 1.0}}


def setup_config(arch: str, method: str, train_fraction: float) -> dict[str, Any]:
    """A ``train.setup`` config as the ServerApp sends it (one local epoch, batch 32): the
    device-runtime tests' setup message with this row's method, architecture and share."""
    return {
        **SETUP,
        "algorithm": method,
        "params": PARAMS.get(method, {}),
        "train_fraction": train_fraction,
        "arch": arch,
    }


def measure(trainer: Trainer | RemoteTrainer, cfg: dict[str, Any], rounds: int) -> dict:
    t0 = time.perf_counter()
    if isinstance(trainer, RemoteTrainer):
        trainer.facts()  # spawn -> ready
    start = time.perf_counter() - t0
    t0 = time.perf_counter()
    trainer.setup(1, cfg)
    setup = time.perf_counter() - t0
    walls, trained, losses = [], [], []
    download: dict[str, np.ndarray] = {}
    upload_bytes = 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        upload, metrics = trainer.train(1, download)
        walls.append(time.perf_counter() - t0)
        trained.append(metrics["train_seconds"])
        losses.append(metrics["train_loss"])
        upload_bytes = sum(v.nbytes for v in upload.values())
        download = upload
    return {
        "start": start,
        "setup": setup,
        "wall": sum(walls) / rounds,
        "train": sum(trained) / rounds,
        "bytes": upload_bytes,
        "losses": losses,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.trainer_split", description=__doc__)
    p.add_argument("--archs", default="cnn4,resnet8")
    p.add_argument("--methods", default="fedavg,fedproto")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--python", default=sys.executable, help="the trainer process's interpreter")
    p.add_argument("--train-fraction", type=float, default=0.75)
    args = p.parse_args(argv)
    print(
        f"# {platform.machine()}, Python {platform.python_version()}; trainer process: "
        f"{args.python}; {args.rounds} rounds, 1 local epoch, batch 32, 1 torch thread"
    )
    print(
        "| arch | method | trainer | start s | setup s | train request s | training s "
        "| beyond training ms | upload KiB | same loss |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="htfl-trainer-split-") as tmp:
        for arch in args.archs.split(","):
            for method in args.methods.split(","):
                cfg = setup_config(arch, method, args.train_fraction)
                local = measure(
                    Trainer("jetson-nano", "bench", Path(tmp) / "a", torch_threads=1),
                    cfg,
                    args.rounds,
                )
                remote_trainer = RemoteTrainer(
                    args.python, "jetson-nano", "bench", Path(tmp) / "b", torch_threads=1
                )
                try:
                    remote = measure(remote_trainer, cfg, args.rounds)
                finally:
                    remote_trainer.stop()
                same = "yes" if remote["losses"] == local["losses"] else "no"
                for kind, row in (("in-process", local), ("process", remote)):
                    print(
                        f"| {arch} | {method} | {kind} | {row['start']:.2f} | {row['setup']:.2f} "
                        f"| {row['wall']:.3f} | {row['train']:.3f} "
                        f"| {1000 * (row['wall'] - row['train']):.1f} "
                        f"| {row['bytes'] / 1024:.1f} | {same} |",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
