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
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from htfl.flower_internals import (
    Fab,
    StartRunRequest,
    SuperLinkConnection,
    build_fab_from_files,
    fab_to_proto,
    init_http_client_from_connection,
    user_config_to_proto,
)
from htfl.workstation.local_fleet import LocalFleet, expand_selection

APP = Path(__file__).parent / "noop_app"


@dataclass
class StockFleet(LocalFleet):
    """The local fleet with stock ``flower-supernode`` processes in place of htfl agents: the
    same launcher, ports and clean-up (every node its own free port; Flower's detached
    ``flwr-serverapp`` stopped with the rest)."""

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        if argv[1:4] == ["-m", "htfl", "agent"]:
            port = next(d.exporter_port for d in self.devices if d.name == name)
            argv = [
                str(Path(sys.executable).parent / "flower-supernode"),
                "--insecure",
                "--superlink",
                self.address,
                "--port",  # its Runtime API, on the port the fleet chose for this node
                str(port),
            ]
        return super()._spawn(name, argv, env)


def noop_fab() -> Fab:
    """The no-op app's FAB, from its files (as ``flwr build`` packs them)."""
    files = {
        str(f.relative_to(APP)): f.read_bytes()
        for f in sorted(APP.rglob("*"))
        if f.is_file() and "__pycache__" not in f.parts
    }
    fab_bytes, _ = build_fab_from_files(files)
    return Fab(hashlib.sha256(fab_bytes).hexdigest(), fab_bytes, {})


def run_side(
    kind: str, nodes: int, rounds: int, work: Path, poll: float = 0.05, settle: float = 8.0
) -> tuple[list[float], float]:
    """Return per-round seconds and the peak RSS (MiB) of one idle node."""
    # Flower's processes inherit this environment; the no-op app is imported from APP.
    os.environ["PYTHONPATH"] = f"{APP}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    fleet_type = StockFleet if kind == "stock" else LocalFleet
    fleet = fleet_type(expand_selection({"orange-pi-5b": nodes}), work / kind, poll_seconds=poll)
    try:
        fleet.start()
        time.sleep(settle)  # idle RSS once every node has registered (and imported torch)
        nodes_rss = [
            psutil.Process(p.pid).memory_info().rss
            for name, p in fleet.procs.items()
            if name != "superlink"
        ]
        out = work / f"{kind}.json"
        client = init_http_client_from_connection(
            SuperLinkConnection(name="bench", address=fleet.address, insecure=True)
        )
        client.StartRun(
            StartRunRequest(
                fab=fab_to_proto(noop_fab()),
                override_config=user_config_to_proto(
                    {"rounds": rounds, "nodes": nodes, "out": str(out), "fast": kind == "htfl"}
                ),
            )
        )
        client.close()
        end = time.monotonic() + 60 + rounds * 15
        while not out.exists() and time.monotonic() < end:
            if report := fleet.exit_report():
                raise RuntimeError(f"{kind}: {report}")
            time.sleep(0.2)
        if not out.exists():
            raise RuntimeError(f"{kind}: no result within the bound; see logs in {work / kind}")
        time.sleep(0.2)  # the file is written in one call; let it close
        return json.loads(out.read_text()), max(nodes_rss) / 2**20
    finally:
        fleet.stop()


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
