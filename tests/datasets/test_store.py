"""Shards on disk: manifest, determinism, per-client loading, integrity, atomic writing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import htfl.datasets.store as store_module
from htfl.datasets import (
    Manifest,
    ManifestError,
    PartitionSpec,
    ShardIntegrityError,
    client_shard,
    load_shard,
    write_shards,
)
from htfl.datasets.store import content_sha256, shard_file_name
from htfl.workstation.datasets.catalog import make_loader
from tests.datasets.conftest import tree
from tests.datasets.fixtures import make_har_zip

SPEC = PartitionSpec("dirichlet", alpha=0.5, min_samples=20)


@pytest.fixture(scope="module")
def digits():
    return make_loader("digits").load()


@pytest.fixture()
def prepared(tmp_path: Path, digits) -> Manifest:
    return write_shards(digits, SPEC, tmp_path / "digits-dir", num_clients=6, seed=3)


def test_manifest_records_partition_sizes_counts_and_hashes(prepared: Manifest) -> None:
    doc = prepared.doc
    assert doc["format"] == "htfl-shards/1"
    assert doc["dataset"] == "digits" and doc["num_classes"] == 10
    assert doc["input_shape"] == [1, 8, 8]
    assert doc["partition"] == {"kind": "dirichlet", "alpha": 0.5, "min_samples": 20}
    assert doc["seed"] == 3 and doc["train_fraction"] == 0.75 and doc["num_clients"] == 6
    assert doc["content_sha256"] == content_sha256(doc)
    files = sorted(p.name for p in prepared.directory.iterdir())
    assert files == sorted(["manifest.json"] + [shard_file_name(i) for i in range(6)])
    total = 0
    for entry in prepared.clients():
        assert entry.file == shard_file_name(entry.client_index)
        assert entry.bytes == (prepared.directory / entry.file).stat().st_size
        assert sum(entry.label_counts.values()) == entry.num_train
        assert sum(entry.test_label_counts.values()) == entry.num_test
        total += entry.num_train + entry.num_test
    assert total == 1797


def test_shard_on_disk_equals_the_in_memory_shard(prepared: Manifest) -> None:
    for i in range(6):
        disk = load_shard(prepared.directory, i, prepared.content_sha256)
        mem = client_shard("digits", SPEC, 6, i, seed=3)
        for name in ("train_x", "train_y", "test_x", "test_y"):
            np.testing.assert_array_equal(getattr(disk, name), getattr(mem, name))
        assert disk.num_classes == 10 and disk.input_shape == (1, 8, 8)
        assert disk.label_counts() == prepared.client(i).label_counts


def test_preparing_twice_gives_identical_bytes(tmp_path: Path, digits, prepared: Manifest) -> None:
    again = write_shards(digits, SPEC, tmp_path / "again", num_clients=6, seed=3)
    assert again.content_sha256 == prepared.content_sha256
    for a, b in zip(prepared.clients(), again.clients(), strict=True):
        assert a.sha256 == b.sha256
    other = write_shards(digits, SPEC, tmp_path / "other-seed", num_clients=6, seed=4)
    assert other.content_sha256 != prepared.content_sha256


def test_loading_reads_only_its_own_file(prepared: Manifest) -> None:
    # Remove every other client's file: client 2 still loads (and could not have read them).
    for i in range(6):
        if i != 2:
            (prepared.directory / shard_file_name(i)).unlink()
    shard = load_shard(prepared.directory, 2, prepared.content_sha256)
    assert shard.client_index == 2 and shard.num_train == prepared.client(2).num_train
    with pytest.raises(ShardIntegrityError, match="client 3's shard is missing"):
        load_shard(prepared.directory, 3)


def test_tampered_shard_is_refused_naming_file_and_hash(prepared: Manifest) -> None:
    path = prepared.directory / shard_file_name(1)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ShardIntegrityError) as err:
        load_shard(prepared.directory, 1, prepared.content_sha256)
    assert str(path) in str(err.value) and prepared.client(1).sha256 in str(err.value)
    load_shard(prepared.directory, 0)  # the others are fine


def test_unexpected_content_hash_is_refused(prepared: Manifest) -> None:
    with pytest.raises(ManifestError, match="the experiment expects " + "0" * 64):
        load_shard(prepared.directory, 0, "0" * 64)


def test_edited_manifest_is_refused(prepared: Manifest) -> None:
    doc = json.loads(prepared.path.read_text())
    doc["clients"][0]["num_train"] += 1
    prepared.path.write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match="edited or damaged"):
        Manifest.read(prepared.directory)
    with pytest.raises(ManifestError, match="no such manifest"):
        Manifest.read(prepared.directory.parent / "missing")


def test_out_of_range_client(prepared: Manifest) -> None:
    with pytest.raises(ManifestError, match="prepared for 6 clients"):
        load_shard(prepared.directory, 6)


def test_existing_output_needs_force(tmp_path: Path, digits, prepared: Manifest) -> None:
    with pytest.raises(FileExistsError, match="--force"):
        write_shards(digits, SPEC, prepared.directory, num_clients=6, seed=3)
    replaced = write_shards(digits, SPEC, prepared.directory, num_clients=4, seed=3, force=True)
    assert replaced.num_clients == 4
    assert sorted(p.name for p in prepared.directory.iterdir()) == sorted(
        ["manifest.json"] + [shard_file_name(i) for i in range(4)]
    )
    assert [p.name for p in tmp_path.iterdir()] == ["digits-dir"]  # no .partial / .old


def test_failed_prepare_leaves_nothing(
    tmp_path: Path, digits, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = store_module._write_npz
    calls = []

    def failing(path, arrays):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        real(path, arrays)

    monkeypatch.setattr(store_module, "_write_npz", failing)
    with pytest.raises(OSError, match="disk full"):
        write_shards(digits, SPEC, tmp_path / "out", num_clients=6, seed=3)
    assert tree(tmp_path) == []


def test_failed_force_keeps_the_previous_preparation(
    tmp_path: Path, digits, prepared: Manifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {p.name: p.read_bytes() for p in prepared.directory.iterdir()}

    def failing(path, arrays):
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module, "_write_npz", failing)
    with pytest.raises(KeyboardInterrupt):
        write_shards(digits, SPEC, prepared.directory, num_clients=6, seed=9, force=True)
    assert {p.name: p.read_bytes() for p in prepared.directory.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["digits-dir"]


KILLED_PREPARE = """
import sys, time
import htfl.datasets.store as store
from htfl.datasets import PartitionSpec, write_shards
from htfl.workstation.datasets.catalog import make_loader

real = store._write_npz
def slow(path, arrays):
    real(path, arrays)
    print("wrote", path.name, flush=True)
    time.sleep(30)
store._write_npz = slow
write_shards(make_loader("digits").load(), PartitionSpec("iid"), sys.argv[1], num_clients=5)
"""


def test_killed_prepare_leaves_no_shards_that_look_whole(tmp_path: Path, digits) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_PREPARE, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("wrote client-00000.npz")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # SIGKILL runs no cleanup: a hidden partial directory remains, but nothing under the
    # output name and no manifest anywhere, so nothing can be loaded as a preparation.
    assert not out.exists()
    leftovers = [p for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".out.partial-")
    assert not list(tmp_path.rglob("manifest.json"))
    with pytest.raises(ManifestError, match="no such manifest"):
        load_shard(out, 0)
    # The next prepare of the same output clears the dead one's leftovers.
    time.sleep(0.1)
    write_shards(digits, PartitionSpec("iid"), out, num_clients=5)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_natural_prepare_records_groups_and_defaults_num_clients(tmp_path: Path) -> None:
    fx = make_har_zip(tmp_path / "har.zip", {"train": [4, 9], "test": [7]})
    loaded = make_loader("har", source=fx.path, expected_sha256=fx.sha256).load()
    manifest = write_shards(loaded, PartitionSpec("natural"), tmp_path / "har-natural")
    assert manifest.num_clients == 3
    assert [e.group for e in manifest.clients()] == ["4", "7", "9"]
    assert manifest.doc["source"] == [
        {"name": "UCI HAR Dataset.zip", "file": "har.zip", "sha256": fx.sha256}
    ]
    for entry in manifest.clients():
        shard = load_shard(manifest.directory, entry.client_index)
        assert shard.input_shape == (9, 128)
        assert shard.num_train + shard.num_test == int((loaded.groups == int(entry.group)).sum())
    with pytest.raises(ValueError, match="num_clients is required"):
        write_shards(loaded, PartitionSpec("iid"), tmp_path / "x")
