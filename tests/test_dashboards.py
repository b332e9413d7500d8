"""The shipped Grafana dashboards read only documented metrics from the provisioned datasource.

Their queries run against a real Prometheus in tests/integration/test_prometheus.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.grafana import GRAFANA_DIR, dashboards, metric_names, panel_queries

DOCUMENTED = set(
    re.findall(
        r"^\| `(htfl_[a-z0-9_]+)`",
        (Path(__file__).parents[1] / "docs" / "metrics.md").read_text(),
        re.MULTILINE,
    )
)
DATASOURCE = yaml.safe_load(
    (GRAFANA_DIR / "provisioning" / "datasources" / "htfl.yml").read_text()
)["datasources"][0]


def test_dashboards_are_shipped() -> None:
    assert set(dashboards()) == {"htfl-devices.json", "htfl-experiment.json"}


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_every_query_reads_documented_metrics(name: str) -> None:
    queries = list(panel_queries(dashboards()[name]))
    assert queries
    for title, expr in queries:
        used = metric_names(expr)
        assert used or 'job="htfl-devices"' in expr, (title, expr)
        assert used <= DOCUMENTED, (title, sorted(used - DOCUMENTED))


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_panels_use_the_provisioned_datasource_and_unique_ids(name: str) -> None:
    board = dashboards()[name]
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["uid"] == DATASOURCE["uid"], panel["title"]


def test_dashboard_uids_are_distinct() -> None:
    uids = [d["uid"] for d in dashboards().values()]
    assert len(set(uids)) == len(uids)
