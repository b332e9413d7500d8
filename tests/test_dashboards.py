"""The shipped Grafana dashboards read only documented metrics from the provisioned datasource.

Their queries run against a real Prometheus in tests/integration/test_prometheus.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import in_ci
from tests.grafana import (
    GRAFANA_DIR,
    RULES_TEST,
    dashboards,
    metric_names,
    panel_queries,
    recorded_names,
    recording_rules,
)

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
    rules = recording_rules()
    for title, expr in queries:
        used, recorded = metric_names(expr), recorded_names(expr)
        assert used or recorded or 'job="htfl-devices"' in expr, (title, expr)
        assert used <= DOCUMENTED, (title, sorted(used - DOCUMENTED))
        assert recorded <= set(rules), (title, sorted(recorded - set(rules)))


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


def test_recording_rules_read_documented_metrics() -> None:
    rules = recording_rules()
    assert rules
    for name, expr in rules.items():
        assert name.startswith("htfl:"), name
        used = metric_names(expr)
        assert used and used <= DOCUMENTED, (name, sorted(used - DOCUMENTED))


def test_recording_rules_pass_promtool_unit_tests() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        message = "promtool not installed: apt-get install -y prometheus"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    proc = subprocess.run(
        [promtool, "test", "rules", RULES_TEST.name],
        cwd=RULES_TEST.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_prometheus_targets_loads_the_recording_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from htfl.cli import main

    monkeypatch.chdir(GRAFANA_DIR.parent)  # the defaults are the repository's paths
    assert main(["prometheus", "targets", "--out", str(tmp_path)]) == 0
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    assert config["rule_files"] == [str((GRAFANA_DIR / "rules" / "htfl.rules.yml").resolve())]
    promtool = shutil.which("promtool")
    if promtool is not None:
        check = subprocess.run(
            [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stdout + check.stderr


def test_prometheus_targets_names_a_missing_rules_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from htfl.cli import main

    missing = tmp_path / "nope.yml"
    assert main(["prometheus", "targets", "--out", str(tmp_path), "--rules", str(missing)]) == 2
    assert f"--rules: {missing}: no such file" in capsys.readouterr().err
    assert not (tmp_path / "prometheus.yml").exists()
