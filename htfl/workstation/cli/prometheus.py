"""`htfl prometheus targets`: Prometheus scrape config from the inventory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from htfl.cli import add_group


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = add_group(
        subparsers,
        "prometheus",
        help="Prometheus configuration from the inventory",
        description="Prometheus scrapes every agent's /metrics and the ServerApp's; "
        "these actions write its configuration from the inventory (docs/metrics.md).",
    )
    t = sub.add_parser(
        "targets",
        help="write file_sd targets and prometheus.yml",
        description="Write OUT/prometheus.yml and OUT/targets/devices.json: one target per "
        "inventory host (its htfl_exporter_port) plus the ServerApp, and the recording rules "
        "the Grafana dashboards (dashboards/) read.",
    )
    t.add_argument(
        "--inventory",
        type=Path,
        default=Path("deploy/inventory/testbed.yml"),
        metavar="FILE",
        help="the Ansible inventory listing the devices",
    )
    t.add_argument(
        "--out",
        type=Path,
        default=Path("dashboards/prometheus"),
        metavar="DIR",
        help="where to write prometheus.yml and targets/ (dashboards/prometheus is git-ignored)",
    )
    t.add_argument(
        "--rules",
        type=Path,
        default=Path("dashboards/rules/htfl.rules.yml"),
        metavar="FILE",
        help="recording rules the dashboards read, named in prometheus.yml",
    )
    t.add_argument(
        "--server",
        default="127.0.0.1:9465",
        metavar="HOST:PORT",
        help="the ServerApp's metrics address (the experiment's [telemetry])",
    )
    t.set_defaults(func=targets)


def targets(args: argparse.Namespace) -> int:
    from htfl.workstation.inventory import InventoryError, load_inventory
    from htfl.workstation.prometheus import write_prometheus_config

    if not args.rules.is_file():
        print(
            f"htfl prometheus targets: error: --rules: {args.rules}: no such file "
            "(run from the repository root, or name the rules file)",
            file=sys.stderr,
        )
        return 2
    try:
        inventory = load_inventory(args.inventory)
    except InventoryError as err:
        print(f"htfl prometheus targets: error: {err}", file=sys.stderr)
        return 2
    path = write_prometheus_config(inventory, args.out, args.server, rules=args.rules)
    print(
        f"wrote {path} and {args.out / 'targets' / 'devices.json'} ({len(inventory.hosts)} devices)"
    )
    return 0
