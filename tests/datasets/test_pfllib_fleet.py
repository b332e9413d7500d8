"""An imported HtFLlib folder, HtFLlib's family and its preset, on a real local fleet."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from htfl.datasets import Manifest
from htfl.workstation.server.results import read_rows
from tests.datasets.test_import_pfllib import _clients, write_pfllib
from tests.integration.conftest import fleet_processes, htfl

pytestmark = pytest.mark.integration

EXPERIMENT = """
[experiment]
id = "pfllib-e2e"
rounds = 2
preset = "htfllib"
[algorithm]
name = "fedproto"
[data]
dataset = "Cifar10"
partition = "imported"
manifest = "{manifest}"
[devices]
classes = {{ "jetson-nano" = 1, "orange-pi-5b" = 1 }}
deadline_seconds = 300
min_replies = 2
[models]
feature_dim = 64
family = "HtFE-img-2"
"""


def test_an_imported_folder_runs_with_htfllibs_family_and_preset(tmp_path: Path) -> None:
    folder = write_pfllib(tmp_path / "Cifar10", _clients((3, 16, 16), 4, [40, 27]), 4)
    shards = tmp_path / "shards"
    result = htfl("data", "import-pfllib", str(folder), "--out", str(shards))
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = Manifest.read(shards)
    exp = tmp_path / "pfllib.toml"
    exp.write_text(EXPERIMENT.format(manifest=manifest.path))
    env = {**os.environ, "HTFL_DATA_DIR": str(tmp_path / "device-data")}
    result = htfl(
        "run", str(exp), "--local-fleet", "2", "--results", str(tmp_path / "results"),
        timeout=600, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "results" / "pfllib-e2e"
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"
    rows = read_rows(out)
    assert all(r["status"] == "ok" for r in rows)
    # HtFLlib's assignment: client i trains family[i % k], whatever its device class
    assert {(int(r["client_index"]), r["arch"]) for r in rows} == {
        (0, "fedavgcnn"),
        (1, "tv_resnet18"),
    }
    # each device trained on exactly its client's imported samples
    setup = {s["client_index"]: s for s in json.loads((out / "setup.json").read_text())}
    for entry in manifest.clients():
        assert setup[entry.client_index]["num_train"] == entry.num_train
        counts = {int(k): v for k, v in setup[entry.client_index]["label_counts"].items()}
        assert counts == entry.label_counts
    # what the preset set is on record, beside the values it set
    recorded = json.loads((out / "experiment.json").read_text())
    assert recorded["experiment"]["preset"] == "htfllib"
    assert "training.drop_last" in recorded["experiment"]["preset_set"]
    assert recorded["training"]["drop_last"] is True and recorded["training"]["shuffle"] is False
    assert recorded["algorithm"]["params"]["weighting"] == "clients"
    assert recorded["models"]["feature_dim"] == 64  # explicit: the preset's 512 did not win
    assert not fleet_processes(tmp_path), "the local fleet left processes behind"
