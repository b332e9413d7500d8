"""Round overhead: stock Flower 1.41 vs htfl, each with N agents on loopback, no-op rounds.

Both sides run the same no-op ServerApp (benchmarks/noop_app) on a real SuperLink:
* stock: `flower-supernode` processes (subprocess isolation: a ClientApp process per message,
  3 s idle poll) and Flower's Grid.send_and_receive;
* htfl:  real `htfl agent` processes (Flower's SuperNode through htfl's adapter, with the
  long-lived in-process worker; torch imported) and htfl's exchange.

Usage (from the repository root): python -m benchmarks.round_overhead [--nodes 4] [--rounds 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from flwr.cli.build import build_fab_from_disk
from flwr.cli.typing import SuperLinkConnection
from flwr.cli.utils import init_http_client_from_connection
from flwr.common.serde import fab_to_proto, user_config_to_proto
from flwr.proto.control_pb2 import StartRunRequest
from flwr.supercore.fab import Fab

from htfl.ports import free_port
from htfl.workstation.local_fleet import flower_env, start_superlink, stop_process_group

APP = Path(__file__).parent / "noop_app"


def _start(argv, log, env):
    return subprocess.Popen(
        argv, stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


def run_side(
    kind: str, nodes: int, rounds: int, work: Path, poll: float = 0.05, settle: float = 8.0
) -> tuple[list[float], float]:
    """Return per-round seconds and the peak RSS (MiB) of one idle agent."""
    port = free_port()
    env = flower_env(work / f"{kind}-home")
    env["PYTHONPATH"] = f"{APP}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    bin_dir = Path(sys.executable).parent
    procs = [start_superlink(port, work / f"{kind}-sl.log", env)]
    try:
        for i in range(nodes):
            if kind == "stock":
                argv = [
                    str(bin_dir / "flower-supernode"),
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{port}",
                    "--port",
                    str(free_port()),
                ]
            else:
                argv = [
                    sys.executable,
                    "-m",
                    "htfl.cli",
                    "agent",
                    "--superlink",
                    f"127.0.0.1:{port}",
                    "--device-class",
                    "orange-pi-5b",
                    "--name",
                    f"dev{i}",
                    "--poll-interval",
                    str(poll),
                    "--torch-threads",
                    "1",
                ]
            procs.append(_start(argv, work / f"{kind}-node{i}.log", env))
        time.sleep(settle)  # idle RSS once every node has registered (and imported torch)
        idle_rss = max(psutil.Process(p.pid).memory_info().rss for p in procs[1:]) / 2**20
        out = work / f"{kind}.json"
        fab_bytes = build_fab_from_disk(APP)
        import hashlib

        fab = Fab(hashlib.sha256(fab_bytes).hexdigest(), fab_bytes, {})
        client = init_http_client_from_connection(
            SuperLinkConnection(name="bench", address=f"127.0.0.1:{port}", insecure=True)
        )
        client.StartRun(
            StartRunRequest(
                fab=fab_to_proto(fab),
                override_config=user_config_to_proto(
                    {"rounds": rounds, "nodes": nodes, "out": str(out), "fast": kind == "htfl"}
                ),
            )
        )
        client.close()
        end = time.monotonic() + 60 + rounds * 15
        while not out.exists() and time.monotonic() < end:
            time.sleep(0.5)
        if not out.exists():
            raise RuntimeError(f"{kind}: no result; see logs in {work}")
        time.sleep(0.2)
        return json.loads(out.read_text()), idle_rss
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            stop_process_group(p, 15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--poll",
        type=float,
        default=0.05,
        help="htfl agents' SuperLink poll interval while active (s)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=8.0,
        help="seconds the nodes idle before their RSS is read (the rounds wait for every node)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="htfl-bench-") as tmp:
        work = Path(tmp)
        stock, stock_rss = run_side("stock", args.nodes, args.rounds, work, settle=args.settle)
        fast, htfl_rss = run_side("htfl", args.nodes, args.rounds, work, args.poll, args.settle)
    m_stock, m_fast = statistics.median(stock), statistics.median(fast)
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}"
    )
    print(
        f"{args.nodes} nodes on loopback, {args.rounds} no-op rounds each (after 1 warm-up); "
        f"htfl agents poll every {args.poll} s while active"
    )
    print(f"{'side':<8}{'median s':>10}{'min s':>10}{'max s':>10}{'idle agent RSS MiB':>20}")
    print(f"{'stock':<8}{m_stock:>10.3f}{min(stock):>10.3f}{max(stock):>10.3f}{stock_rss:>20.1f}")
    print(f"{'htfl':<8}{m_fast:>10.3f}{min(fast):>10.3f}{max(fast):>10.3f}{htfl_rss:>20.1f}")
    print(f"round_overhead_ratio={m_stock / m_fast:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
