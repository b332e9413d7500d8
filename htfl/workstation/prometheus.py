"""Prometheus configuration written from the inventory: file_sd targets and prometheus.yml.

Device name and class are set once, as target labels from the inventory; the scrape config
keeps them (``honor_labels``), so every series of a device carries the inventory's identity.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from htfl.workstation.inventory import Inventory

SCRAPE_INTERVAL = "5s"


def device_targets(inventory: Inventory) -> list[dict]:
    return [
        {
            "targets": [f"{h.address}:{h.exporter_port}"],
            "labels": {"device": h.name, "device_class": h.device_class},
        }
        for h in inventory.hosts
    ]


def prometheus_config(
    targets_dir: Path,
    server_target: str,
    scrape_interval: str = SCRAPE_INTERVAL,
    rule_files: list[Path] | None = None,
) -> dict:
    extra = {"rule_files": [str(p) for p in rule_files]} if rule_files else {}
    return {
        **extra,
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {
                "job_name": "htfl-devices",
                "honor_labels": True,
                "file_sd_configs": [{"files": [str(targets_dir / "devices.json")]}],
            },
            {
                "job_name": "htfl-server",
                "honor_labels": True,
                "static_configs": [{"targets": [server_target]}],
            },
        ],
    }


def write_prometheus_config(
    inventory: Inventory,
    out_dir: Path,
    server_target: str,
    scrape_interval: str = SCRAPE_INTERVAL,
    rules: Path | None = None,
) -> Path:
    """Write ``targets/devices.json`` and ``prometheus.yml`` under ``out_dir``; return the path
    of the latter. ``rules``: a recording-rules file it loads (``dashboards/rules/``)."""
    targets_dir = (out_dir / "targets").resolve()
    targets_dir.mkdir(parents=True, exist_ok=True)
    (targets_dir / "devices.json").write_text(json.dumps(device_targets(inventory), indent=2))
    config_path = out_dir / "prometheus.yml"
    config = prometheus_config(
        targets_dir, server_target, scrape_interval, [rules.resolve()] if rules else None
    )
    config_path.write_text(yaml.safe_dump(config))
    return config_path
