"""Delivery: the shard server, an agent fetching only its own shard, Ansible staging."""

from __future__ import annotations

import http.client
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from htfl.datasets import (
    ManifestError,
    PartitionSpec,
    ShardIntegrityError,
    client_shard,
    load_shard,
    write_shards,
)
from htfl.datasets.delivery import cache_dir, fetch_client_shard, obtain_client_shard
from htfl.datasets.store import MANIFEST, Manifest, shard_file_name
from htfl.workstation.datasets.catalog import make_loader
from htfl.workstation.datasets.delivery import ShardServer, advertised_host, stage_for_ansible
from tests.datasets.conftest import settled, tree

SPEC = PartitionSpec("pathological", classes_per_client=3, min_samples=20)


@pytest.fixture()
def prepared(tmp_path: Path) -> Manifest:
    loaded = make_loader("digits").load()
    return write_shards(loaded, SPEC, tmp_path / "server" / "digits", num_clients=5, seed=1)


def _get(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_server_answers_range_requests(prepared: Manifest) -> None:
    name = shard_file_name(0)
    data = (prepared.directory / name).read_bytes()
    with ShardServer(prepared.directory) as server:
        url = server.url() + name
        status, headers, body = _get(url)
        assert status == 200 and body == data
        assert headers["Accept-Ranges"] == "bytes"
        assert headers["ETag"] == f'"{prepared.client(0).sha256}"'
        status, headers, body = _get(url, {"Range": "bytes=100-199"})
        assert status == 206 and body == data[100:200]
        assert headers["Content-Range"] == f"bytes 100-199/{len(data)}"
        status, _, body = _get(url, {"Range": "bytes=1000-"})
        assert status == 206 and body == data[1000:]
        status, _, body = _get(url, {"Range": "bytes=-10"})
        assert status == 206 and body == data[-10:]
        status, headers, _ = _get(url, {"Range": f"bytes={len(data)}-"})
        assert status == 416 and headers["Content-Range"] == f"bytes */{len(data)}"
        conn = http.client.HTTPConnection(*server.address, timeout=10)
        conn.request("HEAD", "/" + name)
        head = conn.getresponse()
        assert head.status == 200 and int(head.getheader("Content-Length")) == len(data)
        assert head.read() == b""
        conn.close()


def test_server_serves_only_the_preparation(prepared: Manifest, tmp_path: Path) -> None:
    (prepared.directory / "secret.txt").write_text("no")
    with ShardServer(prepared.directory) as server:
        for path in ("secret.txt", "../digits/manifest.json", "%2e%2e/server", "", "nope.npz"):
            assert _get(server.url() + path)[0] == 404
        assert _get(server.url() + MANIFEST)[0] == 200


def test_agent_fetches_only_its_own_shard_then_uses_the_cache(
    prepared: Manifest, data_dir: Path
) -> None:
    target = cache_dir(prepared.content_sha256)
    with ShardServer(prepared.directory) as server:
        manifest = fetch_client_shard(server.url(), 3, prepared.content_sha256, target)
        wanted = {MANIFEST, shard_file_name(3)}
        assert settled(lambda: set(server.requests), wanted) == wanted
        expected = prepared.client(3).bytes
        assert settled(lambda: server.bytes_sent[shard_file_name(3)], expected) == expected
        fetch_client_shard(server.url(), 3, prepared.content_sha256, target)
        assert server.requests[shard_file_name(3)] == 1  # second time: nothing fetched
        assert server.requests[MANIFEST] == 1
    assert manifest.content_sha256 == prepared.content_sha256
    key = prepared.content_sha256[:16]
    assert tree(data_dir) == sorted(
        [
            "shards",
            f"shards/{key}",
            f"shards/{key}/{MANIFEST}",
            f"shards/{key}/{shard_file_name(3)}",
        ]
    )
    shard = load_shard(target, 3, prepared.content_sha256)
    np.testing.assert_array_equal(shard.train_y, client_shard("digits", SPEC, 5, 3, 1).train_y)


def test_agent_resumes_a_partial_shard(prepared: Manifest) -> None:
    target = cache_dir(prepared.content_sha256)
    target.mkdir(parents=True)
    name = shard_file_name(1)
    data = (prepared.directory / name).read_bytes()
    (target / (name + ".part")).write_bytes(data[:4000])
    with ShardServer(prepared.directory) as server:
        fetch_client_shard(server.url(), 1, prepared.content_sha256, target)
        rest = len(data) - 4000
        assert settled(lambda: server.bytes_sent.get(name), rest) == rest
    assert (target / name).read_bytes() == data
    assert not (target / (name + ".part")).exists()


def test_agent_refuses_a_served_shard_that_does_not_match(prepared: Manifest) -> None:
    name = shard_file_name(2)
    path = prepared.directory / name
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    target = cache_dir(prepared.content_sha256)
    with ShardServer(prepared.directory) as server, pytest.raises(ShardIntegrityError) as err:
        fetch_client_shard(server.url(), 2, prepared.content_sha256, target)
    assert name in str(err.value) and prepared.client(2).sha256 in str(err.value)
    assert sorted(p.name for p in target.iterdir()) == [MANIFEST]  # no shard, no .part


def test_agent_refuses_a_preparation_the_experiment_does_not_expect(
    prepared: Manifest, tmp_path: Path
) -> None:
    loaded = make_loader("digits").load()
    other = write_shards(loaded, SPEC, tmp_path / "server" / "other", num_clients=5, seed=2)
    target = cache_dir(prepared.content_sha256)
    with ShardServer(other.directory) as server, pytest.raises(ManifestError) as err:
        fetch_client_shard(server.url(), 0, prepared.content_sha256, target)
    assert other.content_sha256 in str(err.value) and prepared.content_sha256 in str(err.value)
    assert "experiment expects" in str(err.value)
    assert list(target.iterdir()) == []


def _setup_cfg(manifest: Manifest, delivery: str, index: int, url: str = "") -> dict:
    return {
        "dataset": manifest.dataset,
        "partition": {"kind": "iid"},  # ignored: the manifest's partition is what counts
        "num_clients": manifest.num_clients,
        "client_index": index,
        "seed": 0,
        "train_fraction": 0.75,
        "shards": {"delivery": delivery, "url": url, "content_sha256": manifest.content_sha256},
    }


def test_obtain_over_http(prepared: Manifest) -> None:
    with ShardServer(prepared.directory) as server:
        shard = obtain_client_shard(_setup_cfg(prepared, "http", 4, server.url()))
        wanted = {MANIFEST, shard_file_name(4)}
        # the handler thread counts a request after the client may already have its bytes
        assert settled(lambda: set(server.requests), wanted) == wanted
    assert shard.client_index == 4 and shard.num_train == prepared.client(4).num_train
    # Shards prepared for 5 clients cannot serve an experiment of 6.
    cfg = _setup_cfg(prepared, "http", 0, "http://127.0.0.1:9/")
    cfg["num_clients"] = 6
    with pytest.raises(ManifestError, match="prepared for 5 clients"):
        obtain_client_shard(cfg)  # served from the cache: no server needed


def test_obtain_build_is_the_in_memory_shard() -> None:
    cfg = {
        "dataset": "digits",
        "partition": {"kind": "iid", "balanced": True},
        "num_clients": 4,
        "client_index": 1,
        "seed": 0,
        "train_fraction": 0.75,
        "shards": {},
    }
    shard = obtain_client_shard(cfg)
    expected = client_shard("digits", PartitionSpec("iid", balanced=True), 4, 1, 0)
    np.testing.assert_array_equal(shard.test_x, expected.test_x)


def test_stage_for_ansible_and_load_on_the_device(
    prepared: Manifest, tmp_path: Path, data_dir: Path
) -> None:
    hosts = ["nano-01", "nano-02", "opi-01", "opi-02", "phone-01"]
    staged = tmp_path / "staged"
    stage_for_ansible(prepared.path, hosts, staged)
    key = prepared.content_sha256[:16]
    assert tree(staged / "common") == ["shards", f"shards/{key}", f"shards/{key}/{MANIFEST}"]
    for i, host in enumerate(hosts):
        assert tree(staged / host) == [
            "shards",
            f"shards/{key}",
            f"shards/{key}/{shard_file_name(i)}",
        ]
    # What the datasets role does for opi-01 (client 2): common/ then <host>/ into data_dir.
    for part in ("common", "opi-01"):
        shutil.copytree(staged / part, data_dir, dirs_exist_ok=True)
    shard = obtain_client_shard(_setup_cfg(prepared, "ansible", 2))
    assert shard.client_index == 2
    # A device given another host's files (wrong client order) gets a clear error.
    with pytest.raises(ShardIntegrityError, match="client 3's shard is missing"):
        obtain_client_shard(_setup_cfg(prepared, "ansible", 3))
    with pytest.raises(ValueError, match="5 clients but 2 hosts"):
        stage_for_ansible(prepared.path, hosts[:2], tmp_path / "x")


def test_ansible_delivery_without_synced_files(prepared: Manifest) -> None:
    with pytest.raises(ShardIntegrityError, match="ansible delivery expects"):
        obtain_client_shard(_setup_cfg(prepared, "ansible", 0))


def test_advertised_host_is_an_address() -> None:
    host = advertised_host()
    assert host.count(".") == 3
