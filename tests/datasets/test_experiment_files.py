"""experiments/har_natural.toml is valid, and passes preflight once its shards are prepared
where it says."""

from __future__ import annotations

from pathlib import Path

import pytest

from htfl.datasets import PartitionSpec, write_shards
from htfl.workstation.config.experiment import ConfigError, load_experiment
from htfl.workstation.config.preflight import preflight
from htfl.workstation.datasets.catalog import make_loader
from tests.datasets.fixtures import make_har_zip

REPO = Path(__file__).resolve().parents[2]
HAR_NATURAL = REPO / "experiments" / "har_natural.toml"


def test_har_natural_needs_its_prepared_shards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    unprepared = load_experiment(HAR_NATURAL)  # validation alone reads no manifest
    with pytest.raises(ConfigError, match="data.manifest: .*no such manifest"):
        preflight(unprepared)
    subjects = list(range(1, 31))
    fx = make_har_zip(
        tmp_path / "har.zip", {"train": subjects[:21], "test": subjects[21:]}, per_class=1
    )
    loaded = make_loader("har", source=fx.path, expected_sha256=fx.sha256).load()
    manifest = write_shards(loaded, PartitionSpec("natural"), tmp_path / "data" / "har-natural")
    exp = preflight(load_experiment(HAR_NATURAL))
    assert manifest.num_clients == 30 == exp.devices.count
    assert exp.data.manifest == str(manifest.path)
    assert exp.data.shards_sha256 == manifest.content_sha256
    assert exp.data.delivery == "http"
    assert {exp.models.arch_for(c) for c in exp.devices.classes} == {"harcnn"}
