"""``htfl report`` of a real 3-device local-fleet run, rendered by a real browser.

The run is real (SuperLink, three agents, the ServerApp; tests/fleet_runs.py); the page is
opened in headless Chromium (Debian's ``chromium``, deploy/ci-requirements.apt), whose
screenshot must show the page's plots, not a blank or an error page. The summary table's
numbers must equal those computed here from ``rounds.csv`` with the csv module, and the run's
own mean accuracy (summary.json, written by the ServerApp) must be the report's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from htfl.workstation.local_fleet import LocalFleet, expand_selection
from tests.conftest import in_ci
from tests.fleet_runs import run_on_fleet
from tests.report.expected import expected_summary, summary_rows

pytestmark = pytest.mark.integration

EXPERIMENT = """
[experiment]
id = "report-e2e"
rounds = 3
seed = 1
[algorithm]
name = "fedproto"
[data]
dataset = "digits"
partition = "iid"
train_fraction = 0.5
[training]
batch_size = 16
[devices]
classes = { "jetson-nano" = 1, "orange-pi-5b" = 1, "jetson-orin-nano" = 1 }
deadline_seconds = 120
min_replies = 3
[models]
feature_dim = 16
"jetson-nano" = "cnn4"
"orange-pi-5b" = "cnn4"
"jetson-orin-nano" = "cnn4"
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    message = "chromium not installed: apt-get install -y chromium"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def screenshot(page: Path, png: Path, profile: Path) -> None:
    proc = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # root in CI
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--window-size=1280,2400",
            f"--screenshot={png}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "HOME": str(profile)},
    )
    assert proc.returncode == 0 and png.exists(), proc.stderr[-3000:]


def test_report_of_a_real_fleet_run_renders_in_a_browser(tmp_path: Path) -> None:
    exp_file = tmp_path / "exp.toml"
    exp_file.write_text(EXPERIMENT)
    fleet = LocalFleet(
        expand_selection({"jetson-nano": 1, "orange-pi-5b": 1, "jetson-orin-nano": 1}),
        tmp_path / "fleet",
    )
    try:
        fleet.start()
        summary = run_on_fleet(fleet, exp_file, tmp_path / "results")
    finally:
        fleet.stop()
    assert summary.get("status") == "finished", summary
    results = tmp_path / "results" / "report-e2e"

    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "htfl", "report", str(results), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(out / "index.html")

    # the summary table says what rounds.csv says
    (row,) = summary_rows(out / "index.html")
    expected = expected_summary(results)
    assert expected["devices"] == 3 and expected["rounds"] == 3
    for key, value in expected.items():
        assert float(row[key]) == pytest.approx(value, rel=1e-12), key
    # ... and the run reported the same mean accuracy (one definition)
    assert float(row["final_accuracy"]) == pytest.approx(summary["final_accuracy"], rel=1e-12)
    assert float(row["best_accuracy"]) == pytest.approx(summary["best_accuracy"], rel=1e-12)

    # a browser shows it: plots, not a blank page
    png = tmp_path / "shot.png"
    screenshot(out / "index.html", png, tmp_path / "chromium")
    image = Image.open(png).convert("RGB")
    assert image.size == (1280, 2400)
    pixels = np.asarray(image.resize((320, 600))).reshape(-1, 3).astype(int)
    not_white = float(np.mean(pixels.min(axis=1) < 235))
    colours = len(np.unique(pixels, axis=0))
    assert not_white > 0.05, f"page looks blank: {not_white:.1%} non-white"
    assert colours > 200, f"only {colours} colours: no plots drawn"
    # plot colours (matplotlib's blue lines) are on screen, not only text
    blue = (pixels[:, 2] > 150) & (pixels[:, 0] < 80)
    assert blue.any(), "no plot line visible"
