"""[data] with prepared shards: validation (no I/O), the preflight check against the manifest,
and the ServerApp's side."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from htfl.datasets import Manifest, PartitionSpec, write_shards
from htfl.datasets.store import ManifestError
from htfl.workstation.config.experiment import ConfigError, load_experiment
from htfl.workstation.config.preflight import check_files, preflight
from htfl.workstation.datasets.catalog import make_loader
from htfl.workstation.datasets.delivery import start_shard_delivery

EXPERIMENT = """
[experiment]
id = "shards"
rounds = 1
[algorithm]
name = "fedproto"
[data]
{data}
[devices]
classes = {{ "jetson-nano" = 2, "orange-pi-5b" = 1 }}
"""


@pytest.fixture()
def prepared(tmp_path: Path) -> Manifest:
    loaded = make_loader("digits").load()
    spec = PartitionSpec("dirichlet", alpha=0.5, min_samples=20)
    return write_shards(loaded, spec, tmp_path / "prepared", num_clients=3, seed=0)


def _load(tmp_path: Path, data: str):
    """Validate, then preflight: what `htfl run` does before anything starts."""
    path = tmp_path / "exp.toml"
    path.write_text(EXPERIMENT.format(data=data))
    return preflight(load_experiment(path))


def test_manifest_fills_in_hash_and_delivery(tmp_path: Path, prepared: Manifest) -> None:
    exp = _load(
        tmp_path,
        f'dataset = "digits"\npartition = "dirichlet"\nalpha = 0.5\nmin_samples = 20\n'
        f'manifest = "{prepared.path}"',
    )
    assert exp.data.delivery == "http"
    assert exp.data.shards_sha256 == prepared.content_sha256
    recorded = exp.to_dict()["data"]
    assert recorded["delivery"] == "http" and recorded["manifest"] == str(prepared.path)
    assert recorded["shards_sha256"] == prepared.content_sha256
    assert exp.data.shard_spec() == {
        "delivery": "http",
        "url": "",
        "content_sha256": prepared.content_sha256,
    }


def test_validation_reads_no_manifest_and_preflight_pins_its_hash(
    tmp_path: Path, prepared: Manifest
) -> None:
    path = tmp_path / "exp.toml"
    data = f'dataset = "digits"\nalpha = 0.5\nmin_samples = 20\nmanifest = "{prepared.path}"'
    path.write_text(EXPERIMENT.format(data=data))
    prepared.path.rename(prepared.path.with_suffix(".moved"))
    exp = load_experiment(path)  # the manifest is gone: validation does not notice
    assert exp.data.shards_sha256 == "" and exp.data.delivery == "http"
    (problem,) = check_files(exp)
    assert problem.startswith("data.manifest: ") and "no such manifest" in problem
    prepared.path.with_suffix(".moved").rename(prepared.path)
    assert check_files(exp) == []
    assert preflight(exp).data.shards_sha256 == prepared.content_sha256


def test_relative_manifest_resolved_against_the_working_directory(
    tmp_path: Path, prepared: Manifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    exp = _load(
        tmp_path,
        'dataset = "digits"\nalpha = 0.5\nmin_samples = 20\nmanifest = "prepared/manifest.json"',
    )
    assert exp.data.manifest == str(prepared.path)


def test_build_is_the_default_without_a_manifest(tmp_path: Path) -> None:
    exp = _load(tmp_path, 'dataset = "digits"\npartition = "exdir"')
    assert exp.data.delivery == "build" and exp.data.shard_spec() == {}


def test_every_disagreement_with_the_manifest_is_reported(
    tmp_path: Path, prepared: Manifest
) -> None:
    with pytest.raises(ConfigError) as err:
        _load(
            tmp_path,
            f'dataset = "har"\npartition = "dirichlet"\nalpha = 0.1\nmin_samples = 20\n'
            f'train_fraction = 0.8\nmanifest = "{prepared.path}"',
        )
    text = str(err.value)
    assert "data.dataset: 'har' but the manifest holds 'digits'" in text
    assert "data.alpha: 0.1 but the shards were prepared with 0.5" in text
    assert "data.train_fraction: 0.8" in text
    with pytest.raises(ConfigError, match="data.partition: 'iid' but the shards are 'dirichlet'"):
        _load(tmp_path, f'dataset = "digits"\npartition = "iid"\nmanifest = "{prepared.path}"')


def test_wrong_expected_hash_and_missing_manifest(tmp_path: Path, prepared: Manifest) -> None:
    base = 'dataset = "digits"\nalpha = 0.5\nmin_samples = 20\n'
    with pytest.raises(ConfigError, match="experiment expects " + "a" * 64):
        _load(tmp_path, base + f'manifest = "{prepared.path}"\nshards_sha256 = "{"a" * 64}"')
    with pytest.raises(ConfigError, match="data.manifest: .*no such manifest"):
        _load(tmp_path, base + 'manifest = "/nonexistent/manifest.json"')
    with pytest.raises(ConfigError, match='data.manifest: delivery "ansible" needs'):
        _load(tmp_path, base + 'delivery = "ansible"')
    with pytest.raises(ConfigError, match="data.delivery"):
        _load(tmp_path, base + f'manifest = "{prepared.path}"\ndelivery = "build"')


class _Results:
    def __init__(self) -> None:
        self.written: dict[str, object] = {}

    def write_json(self, name: str, obj: object) -> None:
        self.written[name] = json.loads(json.dumps(obj))


def test_server_serves_the_shards_and_records_the_delivery(
    tmp_path: Path, prepared: Manifest
) -> None:
    exp = _load(
        tmp_path,
        f'dataset = "digits"\nalpha = 0.5\nmin_samples = 20\nmanifest = "{prepared.path}"',
    )
    results = _Results()
    resolved, server = start_shard_delivery(exp, results)
    try:
        assert server is not None
        url = resolved.data.shard_url
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "manifest.json", timeout=10) as r:
            assert json.loads(r.read())["content_sha256"] == prepared.content_sha256
    finally:
        server.close()
    record = results.written["data.json"]
    assert record["delivery"] == "http" and record["url"] == url
    assert record["content_sha256"] == prepared.content_sha256
    assert [c["file"] for c in record["clients"]] == [e.file for e in prepared.clients()]


def test_server_checks_device_count_and_ansible_serves_nothing(
    tmp_path: Path, prepared: Manifest
) -> None:
    data = f'dataset = "digits"\nalpha = 0.5\nmin_samples = 20\nmanifest = "{prepared.path}"'
    exp = _load(tmp_path, data + '\ndelivery = "ansible"')
    resolved, server = start_shard_delivery(exp)
    assert server is None and resolved.data.shard_spec()["delivery"] == "ansible"
    four = (tmp_path / "exp.toml").read_text().replace('"jetson-nano" = 2', '"jetson-nano" = 3')
    (tmp_path / "exp.toml").write_text(four)
    with pytest.raises(ManifestError, match="prepared for 3 clients but \\[devices\\] selects 4"):
        start_shard_delivery(preflight(load_experiment(tmp_path / "exp.toml")))
    build = _load(tmp_path, 'dataset = "digits"')
    assert start_shard_delivery(build) == (build, None)


def test_preflight_reports_every_file_problem_at_once(tmp_path: Path, prepared: Manifest) -> None:
    path = tmp_path / "exp.toml"
    data = (
        f'dataset = "digits"\npartition = "dirichlet"\nalpha = 0.3\nmin_samples = 20\n'
        f'train_fraction = 0.8\nmanifest = "{prepared.path}"'
    )
    text = EXPERIMENT.format(data=data).replace(
        'name = "fedproto"',
        f'name = "fedktl"\n[algorithm.params]\ngenerator_path = "{tmp_path}/g.pt"',
    )
    path.write_text(text)
    exp = load_experiment(path)  # valid: nothing it names has been opened yet
    with pytest.raises(ConfigError) as err:
        preflight(exp)
    assert str(err.value).splitlines()[0] == f"invalid experiment file {path}:"
    assert err.value.problems == [
        "data.alpha: 0.3 but the shards were prepared with 0.5",
        "data.train_fraction: 0.8 but the shards were prepared with 0.75",
        f"algorithm.params.generator_path: cannot read '{tmp_path}/g.pt': "
        "No such file or directory",
    ]
