"""HAR-format data, natural split by subject, on a real local fleet with shards over HTTP."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from htfl.datasets import Manifest
from htfl.datasets.store import MANIFEST
from htfl.workstation.server.results import read_rows
from tests.datasets.fixtures import make_har_zip
from tests.integration.conftest import fleet_processes, htfl

pytestmark = pytest.mark.integration

EXPERIMENT = """
[experiment]
id = "har-natural-e2e"
rounds = 4
seed = 2
[algorithm]
name = "fedproto"
[algorithm.params]
lamda = 1.0
[data]
dataset = "har"
partition = "natural"
manifest = "{manifest}"
[training]
local_epochs = 5
batch_size = 16
learning_rate = 0.05
momentum = 0.9
[devices]
classes = {{ "jetson-nano" = 1, "orange-pi-5b" = 1, "lattepanda-delta-3" = 1 }}
deadline_seconds = 120
min_replies = 3
[models]
feature_dim = 64
"jetson-nano" = "harcnn"
"orange-pi-5b" = "harcnn"
"lattepanda-delta-3" = "harcnn"
"""


def test_har_natural_split_runs_on_a_local_fleet(tmp_path: Path) -> None:
    archive = make_har_zip(
        tmp_path / "UCI_HAR_Dataset.zip", {"train": [1, 3], "test": [2]}, per_class=10, wrapped=True
    )
    prepared = tmp_path / "har-natural"
    result = htfl(
        "data", "prepare", "har", "--source", str(archive.path),
        "--expected-sha256", archive.sha256, "--partition", "natural", "--out", str(prepared),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = Manifest.read(prepared)
    assert [e.group for e in manifest.clients()] == ["1", "2", "3"]

    exp = tmp_path / "har.toml"
    exp.write_text(EXPERIMENT.format(manifest=manifest.path))
    devices_data = tmp_path / "device-data"  # every agent of this fleet shares it
    env = {**os.environ, "HTFL_DATA_DIR": str(devices_data)}
    result = htfl(
        "run", str(exp), "--local-fleet", "3", "--results", str(tmp_path / "results"),
        timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]

    out = tmp_path / "results" / "har-natural-e2e"
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"
    rows = read_rows(out)
    assert sorted((int(r["round"]), int(r["client_index"])) for r in rows) == [
        (rnd, c) for rnd in range(1, 5) for c in range(3)
    ]
    assert {r["arch"] for r in rows} == {"harcnn"}
    assert all(r["status"] == "ok" for r in rows)

    def accuracy(rnd: int) -> float:
        scored = [r for r in rows if int(r["round"]) == rnd]
        total = sum(int(r["num_test"]) for r in scored)
        return sum(float(r["test_accuracy"]) * int(r["num_test"]) for r in scored) / total

    assert max(accuracy(rnd) for rnd in range(1, 5)) > 0.45  # 6 classes: chance is 1/6

    # Each device trained on exactly its subject's prepared shard.
    setup = {s["client_index"]: s for s in json.loads((out / "setup.json").read_text())}
    for entry in manifest.clients():
        assert setup[entry.client_index]["num_train"] == entry.num_train
        assert setup[entry.client_index]["num_test"] == entry.num_test
        counts = {int(k): v for k, v in setup[entry.client_index]["label_counts"].items()}
        assert counts == entry.label_counts

    # The delivery is recorded, and what reached the devices is the manifest plus one shard
    # per device, verified (no partial downloads left).
    recorded = json.loads((out / "experiment.json").read_text())["data"]
    assert recorded["delivery"] == "http"
    assert recorded["shards_sha256"] == manifest.content_sha256
    data_record = json.loads((out / "data.json").read_text())
    assert data_record["content_sha256"] == manifest.content_sha256
    assert data_record["url"].startswith("http://127.0.0.1:")
    cache = devices_data / "shards" / manifest.content_sha256[:16]
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [MANIFEST] + [e.file for e in manifest.clients()]
    )
    for entry in manifest.clients():
        assert (cache / entry.file).read_bytes() == (prepared / entry.file).read_bytes()
    assert not fleet_processes(tmp_path), "the local fleet left processes behind"
