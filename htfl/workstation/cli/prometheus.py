"""`htfl prometheus targets`: Prometheus scrape config from the inventory."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("prometheus", help="Prometheus configuration from the inventory")
    sub = p.add_subparsers(dest="prometheus_command", required=True)
    t = sub.add_parser("targets", help="write file_sd targets and prometheus.yml")
    t.add_argument("--inventory", type=Path, default=Path("deploy/inventory/testbed.yml"))
    t.add_argument("--out", type=Path, default=Path("dashboards/prometheus"))
    t.add_argument(
        "--server",
        default="127.0.0.1:9465",
        help="the ServerApp's metrics address (experiment [telemetry])",
    )
    t.set_defaults(func=targets)


def targets(args: argparse.Namespace) -> int:
    from htfl.workstation.inventory import InventoryError, load_inventory
    from htfl.workstation.prometheus import write_prometheus_config

    try:
        inventory = load_inventory(args.inventory)
    except InventoryError as err:
        print(f"error: {err}")
        return 2
    path = write_prometheus_config(inventory, args.out, args.server)
    print(
        f"wrote {path} and {args.out / 'targets' / 'devices.json'} ({len(inventory.hosts)} devices)"
    )
    return 0
