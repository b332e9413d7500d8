"""The Grafana dashboards shipped in ``dashboards/``: where they are and what they query.

Dashboards are plain Grafana JSON (edit them in Grafana and export); only the tests read them,
to check every panel's PromQL against the metrics table and a real Prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

GRAFANA_DIR = Path(__file__).resolve().parents[1] / "dashboards"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
RULES_FILE = GRAFANA_DIR / "rules" / "htfl.rules.yml"
RULES_TEST = GRAFANA_DIR / "rules" / "htfl.rules.test.yml"
_METRIC = re.compile(r"\b(htfl_[a-z0-9_]+)\b")
_RECORDED = re.compile(r"\b(htfl:[a-z0-9_:]+)")


def dashboards() -> dict[str, dict]:
    """Every shipped dashboard by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json"))}


def panel_queries(dashboard: dict) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel."""
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def metric_names(expr: str) -> set[str]:
    """The htfl metric names a query reads (without Prometheus' counter/histogram suffixes)."""
    return set(_METRIC.findall(expr))


def concrete(expr: str, rate_interval: str = "1m") -> str:
    """The query as Grafana sends it with every device selected."""
    return expr.replace("$device", ".*").replace("$__rate_interval", rate_interval)


def recorded_names(expr: str) -> set[str]:
    """The recording-rule series (``htfl:...``) a query reads."""
    return set(_RECORDED.findall(expr))


def recording_rules() -> dict[str, str]:
    """Every recording rule of the shipped rules file: recorded name -> PromQL."""
    import yaml

    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return {r["record"]: r["expr"] for g in groups for r in g["rules"]}
