"""`htfl data` end to end in-process: prepare, stats (table + PNG), stage, list, errors."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from htfl.cli import main
from htfl.datasets import Manifest, PartitionSpec, write_shards
from htfl.workstation.datasets.catalog import make_loader
from htfl.workstation.datasets.stats import count_matrix, plot_label_distribution, summary_rows
from tests.datasets.conftest import tree
from tests.datasets.fixtures import corrupt, make_cifar_tar, make_har_zip


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_count_matrix_and_rows_match_the_manifest(tmp_path: Path) -> None:
    loaded = make_loader("digits").load()
    spec = PartitionSpec("pathological", classes_per_client=2, min_samples=20)
    manifest = write_shards(loaded, spec, tmp_path / "p", num_clients=10, seed=0)
    counts = count_matrix(manifest)
    assert counts.shape == (10, 10) and counts.sum() == 1797
    assert ((counts > 0).sum(axis=1) == 2).all()  # pathological: exactly 2 classes each
    train = count_matrix(manifest, "train")
    assert train.sum() == sum(e.num_train for e in manifest.clients())
    rows = summary_rows(manifest)
    assert [r["num_classes_held"] for r in rows] == [2] * 10
    png = plot_label_distribution(manifest, tmp_path / "plot.png")
    width, height = _png_size(png)
    assert width >= 600 and height >= 400


def test_prepare_stats_and_stage_via_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fx = make_har_zip(tmp_path / "UCI_HAR_Dataset.zip", {"train": [1, 3, 5], "test": [2]})
    out = tmp_path / "har-natural"
    rc = main(
        [
            "data",
            "prepare",
            "har",
            "--source",
            str(fx.path),
            "--expected-sha256",
            fx.sha256,
            "--partition",
            "natural",
            "--seed",
            "7",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    manifest = Manifest.read(out)
    assert manifest.num_clients == 4 and manifest.seed == 7
    assert f"content_sha256 {manifest.content_sha256}" in captured.out
    assert 'partition = "natural"' in captured.out
    assert f'shards_sha256 = "{manifest.content_sha256}"' in captured.out

    rc = main(["data", "stats", str(out / "manifest.json"), "--json"])
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert rc == 0 and [r["group"] for r in rows] == ["1", "2", "3", "5"]
    assert all(r["num_classes_held"] == 6 for r in rows)
    assert _png_size(out / "label-distribution.png")[0] > 0

    rc = main(["data", "stats", str(out)])
    captured = capsys.readouterr()
    assert rc == 0 and "har: natural" in captured.out and "label counts" in captured.out

    rc = main(["data", "stage", str(out), "--out", str(tmp_path / "staged"), "--hosts", "a,b,c,d"])
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "staged").iterdir()) == ["a", "b", "c", "common", "d"]
    rc = main(["data", "stage", str(out), "--out", str(tmp_path / "x"), "--hosts", "a,b"])
    assert rc == 2 and "4 clients but 2 hosts" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["corrupted", "truncated"])
def test_prepare_from_a_bad_archive_fails_cleanly(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture, how: str
) -> None:
    fx = make_cifar_tar(tmp_path / "cifar-10-python.tar.gz", "cifar10")
    bad = corrupt(fx.path, how)
    out = tmp_path / "prepared" / "cifar"
    rc = main(
        [
            "data",
            "prepare",
            "cifar10",
            "--source",
            str(bad),
            "--partition",
            "iid",
            "--num-clients",
            "2",
            "--min-samples",
            "1",
            "--out",
            str(out),
        ]
    )
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 2
    assert bad.name in err and "md5:c58f30108f718f92721af3b95e74349a" in err  # upstream md5
    assert not (tmp_path / "prepared").exists() and tree(data_dir) == []
    rc = main(
        [
            "data",
            "prepare",
            "cifar10",
            "--source",
            str(bad),
            "--expected-sha256",
            fx.sha256,
            "--partition",
            "iid",
            "--num-clients",
            "2",
            "--min-samples",
            "1",
            "--out",
            str(out),
        ]
    )
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 2 and fx.sha256 in err and bad.name in err
    assert not (tmp_path / "prepared").exists()
    # The intact archive prepares fine.
    rc = main(
        [
            "data",
            "prepare",
            "cifar10",
            "--source",
            str(fx.path),
            "--expected-sha256",
            fx.sha256,
            "--partition",
            "iid",
            "--num-clients",
            "2",
            "--min-samples",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0 and Manifest.read(out).num_clients == 2


def test_prepare_loader_options_and_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fx = make_har_zip(tmp_path / "har.zip", {"train": [1, 3, 5], "test": [2]})
    out = tmp_path / "top2"
    rc = main(
        [
            "data",
            "prepare",
            "har",
            "--source",
            str(fx.path),
            "--expected-sha256",
            fx.sha256,
            "-o",
            "top_subjects=2",
            "--out",
            str(out),
            "--png",
            str(tmp_path / "p.png"),
        ]
    )
    assert rc == 0
    manifest = Manifest.read(out)
    assert manifest.num_clients == 2 and manifest.doc["loader_options"] == {"top_subjects": 2}
    assert (tmp_path / "p.png").exists()
    rc = main(
        [
            "data",
            "prepare",
            "har",
            "--source",
            str(fx.path),
            "--expected-sha256",
            fx.sha256,
            "-o",
            "bogus=1",
            "--out",
            str(tmp_path / "y"),
        ]
    )
    assert rc == 2 and "bogus" in capsys.readouterr().err
    rc = main(["data", "prepare", "digits", "--source", str(fx.path), "--out", str(tmp_path / "z")])
    assert rc == 2 and "no source" in capsys.readouterr().err
    assert not (tmp_path / "y").exists() and not (tmp_path / "z").exists()


def test_list_shows_the_checksum_table(capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "har",
        "pamap2",
        "cifar10",
        "cifar100",
        "mnist",
        "fashion-mnist",
        "femnist",
        "iwildcam",
    ):
        assert name in out
    assert "md5:c58f30108f718f92721af3b95e74349a" in out


def test_stats_of_a_missing_manifest(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "stats", str(tmp_path / "nope")]) == 2
    assert "no such manifest" in capsys.readouterr().err


def test_pathological_plot_has_k_bubbles_per_column(tmp_path: Path) -> None:
    loaded = make_loader("digits").load()
    manifest = write_shards(
        loaded,
        PartitionSpec("pathological", classes_per_client=3, min_samples=20),
        tmp_path / "p",
        num_clients=8,
        seed=1,
    )
    counts = count_matrix(manifest)
    assert np.all((counts > 0).sum(axis=1) == 3)
