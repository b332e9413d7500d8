"""Checksums, resumable downloads, and upstream files: verified before they take their name."""

from __future__ import annotations

import hashlib
import multiprocessing
from pathlib import Path

import pytest

from htfl.datasets.integrity import (
    Checksum,
    ChecksumError,
    DownloadError,
    atomic_path,
    download,
    verify_file,
)
from htfl.workstation.datasets import upstream as upstream_module
from htfl.workstation.datasets.catalog import make_loader
from htfl.workstation.datasets.upstream import UpstreamFile, resolve_files
from tests.datasets.conftest import settled, tree
from tests.datasets.fixtures import corrupt, make_cifar_tar
from tests.datasets.httpfixtures import file_server

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def _sha(data: bytes) -> Checksum:
    return Checksum("sha256", hashlib.sha256(data).hexdigest())


def test_checksum_parse() -> None:
    assert Checksum.parse("MD5:" + "A" * 32) == Checksum("md5", "a" * 32)
    assert Checksum.parse("b" * 64).algorithm == "sha256"
    assert Checksum.parse("c" * 32).algorithm == "md5"
    for bad in ("xyz", "sha256:1234", "sha1:" + "a" * 40):
        with pytest.raises(ValueError):
            Checksum.parse(bad)


def test_verify_file_names_file_and_expected(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"hello")
    good = _sha(b"hello")
    assert verify_file(path, good)["sha256"] == good.hex
    wrong = _sha(b"other")
    with pytest.raises(ChecksumError) as err:
        verify_file(path, [wrong, Checksum("md5", "0" * 32)])
    message = str(err.value)
    assert str(path) in message and wrong.hex in message and "md5:" + "0" * 32 in message


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert tree(tmp_path) == []
    with atomic_path(final) as tmp:
        tmp.write_bytes(b"whole")
    assert final.read_bytes() == b"whole" and tree(tmp_path) == ["out.bin"]


def test_download_verifies_then_caches(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "f.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "dl" / "f.bin"
    with file_server(tmp_path / "srv") as srv:
        first = download(srv.url + "f.bin", dest, _sha(PAYLOAD))
        again = download(srv.url + "f.bin", dest, _sha(PAYLOAD))
        assert len(srv.log) == 1  # the second call found the verified file
    assert first.bytes_downloaded == len(PAYLOAD) and not first.cached
    assert again.cached and again.bytes_downloaded == 0
    assert dest.read_bytes() == PAYLOAD
    assert tree(dest.parent) == ["f.bin"]


def _download_in_child(url: str, dest: str, sha: str, results) -> None:
    try:
        result = download(url, dest, Checksum("sha256", sha))
        results.put(("ok", result.cached))
    except Exception as err:  # reported to the parent, which asserts on it
        results.put(("error", f"{type(err).__name__}: {err}"))


def test_two_processes_downloading_one_file_take_turns(tmp_path: Path) -> None:
    """Two agents sharing a data dir: one fetches, the other waits and finds the file."""
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "f.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "dl" / "f.bin"
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    with file_server(tmp_path / "srv") as srv:
        srv.delay = 0.5  # the first transfer is still under way when the second one starts
        procs = [
            ctx.Process(
                target=_download_in_child,
                args=(srv.url + "f.bin", str(dest), _sha(PAYLOAD).hex, results),
            )
            for _ in range(2)
        ]
        for proc in procs:
            proc.start()
        outcomes = sorted(results.get(timeout=30) for _ in procs)
        for proc in procs:
            proc.join(10)
        assert outcomes == [("ok", False), ("ok", True)]  # one fetched, one found it cached
        assert len(srv.log) == 1
    assert dest.read_bytes() == PAYLOAD
    assert tree(dest.parent) == ["f.bin"]


def test_download_resumes_a_partial_file_with_range(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "f.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "dl" / "f.bin"
    dest.parent.mkdir()
    (dest.parent / "f.bin.part").write_bytes(PAYLOAD[:300_000])
    with file_server(tmp_path / "srv") as srv:
        result = download(srv.url + "f.bin", dest, _sha(PAYLOAD))
        assert srv.log == [("/f.bin", "bytes=300000-")]
        rest = len(PAYLOAD) - 300_000
        assert settled(lambda: srv.sent, rest) == rest
    assert result.resumed_from == 300_000
    assert result.bytes_downloaded == len(PAYLOAD) - 300_000
    assert dest.read_bytes() == PAYLOAD


def test_download_survives_a_dropped_connection(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "f.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "dl" / "f.bin"
    with file_server(tmp_path / "srv") as srv:
        srv.cut_after = 100_000
        result = download(srv.url + "f.bin", dest, _sha(PAYLOAD), backoff=0.01)
        assert srv.log[0] == ("/f.bin", None)
        assert srv.log[1] == ("/f.bin", "bytes=100000-")
    assert dest.read_bytes() == PAYLOAD
    assert result.bytes_downloaded == len(PAYLOAD)


def test_download_restarts_when_the_server_ignores_range(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "f.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "dl" / "f.bin"
    dest.parent.mkdir()
    (dest.parent / "f.bin.part").write_bytes(b"garbage" * 10)
    with file_server(tmp_path / "srv", ranges=False) as srv:
        download(srv.url + "f.bin", dest, _sha(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD


def test_download_mismatch_removes_the_part_and_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "f.bin").write_bytes(PAYLOAD[:-1])  # truncated upstream copy
    dest = tmp_path / "dl" / "f.bin"
    with file_server(tmp_path / "srv") as srv, pytest.raises(ChecksumError) as err:
        download(srv.url + "f.bin", dest, _sha(PAYLOAD))
    assert str(dest) in str(err.value) and _sha(PAYLOAD).hex in str(err.value)
    assert tree(dest.parent) == []


def test_download_404_tries_the_next_url_then_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "f.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "dl" / "f.bin"
    with file_server(tmp_path / "srv") as srv:
        download([srv.url + "missing.bin", srv.url + "f.bin"], dest, _sha(PAYLOAD))
        assert dest.read_bytes() == PAYLOAD
        with pytest.raises(DownloadError, match="HTTP 404"):
            download(srv.url + "missing.bin", tmp_path / "dl" / "g.bin", None, backoff=0)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.bin"]


def test_loader_downloads_upstream_archive_when_allowed(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "srv").mkdir()
    fx = make_cifar_tar(tmp_path / "srv" / "cifar-10-python.tar.gz", "cifar10")
    with file_server(tmp_path / "srv") as srv:
        monkeypatch.setitem(
            upstream_module.UPSTREAM,
            "cifar10",
            (
                UpstreamFile(
                    "cifar-10-python.tar.gz",
                    (srv.url + "cifar-10-python.tar.gz",),
                    (Checksum("sha256", fx.sha256),),
                ),
            ),
        )
        with pytest.raises(FileNotFoundError, match="--download"):
            make_loader("cifar10").load()  # not downloaded unless asked
        loaded = make_loader("cifar10", download=True).load()
        assert loaded.num_samples == 36
        cached = data_dir / "archives" / "cifar10" / "cifar-10-python.tar.gz"
        assert cached.read_bytes() == fx.path.read_bytes()
        make_loader("cifar10").load()  # the registered default now finds it
        assert len(srv.log) == 1


def test_refuses_to_download_without_a_checksum(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="without a checksum"):
        resolve_files("pamap2", download_missing=True)
    assert tree(data_dir) == []


@pytest.mark.parametrize("how", ["corrupted", "truncated"])
def test_corrupt_source_names_file_and_checksum_and_writes_nothing(
    tmp_path: Path, data_dir: Path, how: str
) -> None:
    fx = make_cifar_tar(tmp_path / "cifar-10-python.tar.gz", "cifar10")
    bad = corrupt(fx.path, how)
    before = tree(tmp_path)
    with pytest.raises(ChecksumError) as err:
        make_loader("cifar10", source=bad, expected_sha256=fx.sha256).load()
    assert str(bad) in str(err.value) and fx.sha256 in str(err.value)
    assert tree(tmp_path) == before
    assert tree(data_dir) == []
