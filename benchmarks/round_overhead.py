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

from benchmarks.fleet_round import cpu_seconds
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
from htfl.workstation.server.doorbell import RUN_CONFIG_KEY, address_for

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


@dataclass
class Side:
    """One side's figures: seconds per round, idle RSS, CPU seconds per round."""

    rounds: list[float]
    rss_mib: float
    superlink_cpu: float
    nodes_cpu: float


def run_side(
    kind: str, nodes: int, rounds: int, work: Path, poll: float = 0.05, settle: float = 8.0
) -> Side:
    """Run one side: per-round seconds, the peak idle RSS (MiB) of one node, and the CPU
    seconds per timed round (after the warm-up) of the SuperLink (with the ServerApp it starts) and
    of all nodes (with their ClientApp processes), which the machine's load inflates less."""
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
        link = [fleet.procs["superlink"].pid]
        node_pids = [p.pid for name, p in fleet.procs.items() if name != "superlink"]
        client.StartRun(
            StartRunRequest(
                fab=fab_to_proto(noop_fab()),
                override_config=user_config_to_proto(
                    {
                        "rounds": rounds,
                        "nodes": nodes,
                        "out": str(out),
                        "fast": kind == "htfl",
                        # htfl's side rings its agents as `htfl run` does (stock: no doorbell)
                        RUN_CONFIG_KEY: address_for(fleet.address) if kind == "htfl" else "",
                    }
                ),
            )
        )
        client.close()
        end = time.monotonic() + 60 + rounds * 15
        warm = Path(f"{out}.warm")
        cpu0 = None
        while not out.exists() and time.monotonic() < end:  # then read CPU at once
            if cpu0 is None and warm.exists():  # the warm-up round is over: CPU from here
                cpu0 = cpu_seconds(link), cpu_seconds(node_pids)
            if report := fleet.exit_report():
                raise RuntimeError(f"{kind}: {report}")
            time.sleep(0.2)
        if not out.exists():
            raise RuntimeError(f"{kind}: no result within the bound; see logs in {work / kind}")
        cpu1 = cpu_seconds(link), cpu_seconds(node_pids)  # before the ServerApp exits
        cpu0 = cpu0 or (0.0, 0.0)  # all rounds within one check: counts the warm-up too
        time.sleep(0.2)  # the file is written in one call; let it close
        return Side(
            json.loads(out.read_text()),
            max(nodes_rss) / 2**20,
            (cpu1[0] - cpu0[0]) / rounds,
            (cpu1[1] - cpu0[1]) / rounds,
        )
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
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="htfl-bench-") as tmp:
        work = Path(tmp)
        stock = run_side("stock", args.nodes, args.rounds, work, settle=args.settle)
        fast = run_side("htfl", args.nodes, args.rounds, work, args.poll, args.settle)
    m_stock, m_fast = statistics.median(stock.rounds), statistics.median(fast.rounds)
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}, load average {load_start:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    print(
        f"{args.nodes} nodes on loopback, {args.rounds} no-op rounds each (after 1 warm-up); "
        f"htfl agents poll every {args.poll} s while active when the run has no doorbell"
    )
    print(
        f"{'side':<8}{'median s':>10}{'min s':>10}{'max s':>10}{'idle agent RSS MiB':>20}"
        f"{'SuperLink+ServerApp CPU s/round':>33}{'nodes CPU s/round':>19}"
    )
    for name, side, median in (("stock", stock, m_stock), ("htfl", fast, m_fast)):
        print(
            f"{name:<8}{median:>10.3f}{min(side.rounds):>10.3f}{max(side.rounds):>10.3f}"
            f"{side.rss_mib:>20.1f}{side.superlink_cpu:>33.3f}{side.nodes_cpu:>19.3f}"
        )
    print(f"round_overhead_ratio={m_stock / m_fast:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
