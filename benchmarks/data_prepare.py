"""Prepare 100 shards of a 60k-sample image set, and load one as an agent would: one table.

The data is synthetic and MNIST-shaped (60,000 x 1 x 28 x 28 float32, 10 classes; no
dataset host is reachable here), registered under the name "synthetic-mnist". Each step
runs in a fresh Python process so its peak memory is its own:

* partition: Dirichlet(0.1) over 100 clients (the PFLlib default), per-client train/test
  split, nothing written;
* prepare: partition + write 100 shards + manifest (atomic, with sha256 of every file);
* agent load (verified / unverified): read the manifest and one client's file, with and
  without checking its sha256; every other client's file is deleted first, which proves
  that loading does not touch them;
* agent fetch over HTTP: the same shard downloaded from the shard server on loopback,
  verified and loaded (what an agent does at ``train.setup`` with ``delivery = "http"``).

Columns: wall seconds (median of ``--repeat`` runs), peak traced allocations during the step
(tracemalloc: Python objects and numpy buffers allocated by the step itself) and the
process's max RSS (for partition/prepare it includes the 188 MB synthetic dataset, made
before the timed step; for the agent steps only the interpreter, numpy and one shard).

    python -m benchmarks.data_prepare [--clients 100] [--samples 60000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, resource, shutil, sys, time, tracemalloc
from pathlib import Path
import numpy as np

step, out, clients, samples = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
from htfl.datasets import LoadedDataset, PartitionSpec, load_shard, partition_indices, write_shards
from htfl.datasets.partition import split_train_test
from htfl.datasets.shard import split_seed

def synthetic():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, size=samples).astype(np.int64)
    x = rng.random((samples, 1, 28, 28), dtype=np.float32)
    return LoadedDataset("synthetic-mnist", x, y, 10, (1, 28, 28))

spec = PartitionSpec("dirichlet", alpha=0.1, min_samples=10)
extra = {}
if step in ("partition", "prepare"):
    data = synthetic()  # generated outside the timed region
    tracemalloc.start()
    t0 = time.perf_counter()
    if step == "partition":
        parts = partition_indices(data.y, clients, spec, seed=0)
        for i, part in enumerate(parts):
            split_train_test(part, data.y, 0.75, split_seed(0, i))
    else:
        manifest = write_shards(data, spec, out, num_clients=clients, seed=0, force=True)
        extra["bytes"] = sum(e.bytes for e in manifest.clients())
        extra["shard_mb_mean"] = extra["bytes"] / clients / 1e6
else:
    from htfl.datasets.store import Manifest
    manifest = Manifest.read(out)
    index = clients // 2
    if step.startswith("load"):
        tracemalloc.start()
        t0 = time.perf_counter()
        shard = load_shard(out, index, manifest.content_sha256, verify=(step == "load-verified"))
    else:
        from htfl.datasets.delivery import fetch_client_shard
        from htfl.workstation.datasets.delivery import ShardServer
        target = Path(sys.argv[5])
        shutil.rmtree(target, ignore_errors=True)
        with ShardServer(out) as server:
            tracemalloc.start()
            t0 = time.perf_counter()
            fetched = fetch_client_shard(server.url(), index, manifest.content_sha256, target)
            shard = load_shard(fetched, index, manifest.content_sha256)
            extra["seconds"] = time.perf_counter() - t0  # not the server's shutdown
            extra["bytes"] = sum(server.bytes_sent.values())
    extra["samples"] = shard.num_train + shard.num_test
seconds = time.perf_counter() - t0
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"seconds": seconds, "peak_mb": peak / 1e6,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra}))
"""


def run(step: str, out: Path, clients: int, samples: int, cache: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, step, str(out), str(clients), str(samples), str(cache)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{step} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows: list[tuple[str, list[dict]]] = []
    with tempfile.TemporaryDirectory(prefix="htfl-bench-") as tmp:
        out = Path(tmp) / "prepared"
        cache = Path(tmp) / "agent-cache"
        for step in ("partition", "prepare"):
            runs = [run(step, out, args.clients, args.samples, cache) for _ in range(args.repeat)]
            rows.append((step, runs))
        keep = f"client-{args.clients // 2:05d}.npz"
        for path in out.glob("client-*.npz"):  # the agent's own file is all that is left
            if path.name != keep:
                path.unlink()
        for step in ("load-verified", "load-unverified", "fetch-http"):
            runs = [run(step, out, args.clients, args.samples, cache) for _ in range(args.repeat)]
            rows.append((step, runs))
    labels = {
        "partition": f"partition (dirichlet 0.1, {args.clients} clients, train/test split)",
        "prepare": f"prepare: partition + write {args.clients} shards + manifest",
        "load-verified": "agent load of its shard (sha256 verified)",
        "load-unverified": "agent load of its shard (no hash check)",
        "fetch-http": "agent fetch over HTTP (loopback) + verify + load",
    }
    cpu = os.cpu_count()
    print(
        f"\n{args.samples} synthetic MNIST-shaped samples (float32 1x28x28), {args.clients} "
        f"clients; {cpu} CPUs; median of {args.repeat} runs, each in a fresh process\n"
    )
    columns = [
        ("step", 62),
        ("seconds", 8),
        ("peak traced MB", 14),
        ("max RSS MB", 10),
        ("notes", 34),
    ]
    print("| " + " | ".join(f"{name:<{width}}" for name, width in columns) + " |")
    print("|" + "|".join("-" * (width + 2) for _, width in columns) + "|")
    for step, results in rows:
        med = {
            k: statistics.median(r[k] for r in results) for k in ("seconds", "peak_mb", "rss_mb")
        }
        note = ""
        if step == "prepare":
            note = (
                f"{results[0]['bytes'] / 1e6:.0f} MB written, "
                f"{results[0]['shard_mb_mean']:.2f} MB/shard"
            )
        elif step.startswith(("load", "fetch")):
            note = f"{results[0]['samples']} samples"
            if step == "fetch-http":
                note += f", {results[0]['bytes'] / 1e6:.2f} MB sent"
        print(
            f"| {labels[step]:<62} | {med['seconds']:>8.3f} | {med['peak_mb']:>14.1f} | "
            f"{med['rss_mb']:>10.0f} | {note:<34} |"
        )


if __name__ == "__main__":
    main()
