"""Every loader: a corrupted or truncated archive is refused naming the file and the
expected checksum, and `htfl data prepare` leaves nothing behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from htfl.cli import main
from htfl.datasets.integrity import sha256_file
from tests.datasets.conftest import tree
from tests.datasets.fixtures import (
    corrupt,
    make_cifar_tar,
    make_femnist_zip,
    make_har_zip,
    make_iwildcam_tar,
    make_mnist_dir,
    make_pamap2_zip,
    pamap2_rows,
)


def _archive(name: str, tmp: Path) -> Path:
    if name == "har":
        return make_har_zip(tmp / "UCI HAR Dataset.zip", wrapped=True).path
    if name == "pamap2":
        return make_pamap2_zip(tmp / "PAMAP2_Dataset.zip", {101: pamap2_rows(101, [(1, 300)])})
    if name in ("cifar10", "cifar100"):
        return make_cifar_tar(tmp / f"{name}.tar.gz", name).path
    if name == "femnist":
        return make_femnist_zip(tmp / "femnist.zip", {"f1": 6, "f2": 6}).path
    if name == "iwildcam":
        rows = [(f"a{i}.jpg", 3, 1) for i in range(4)] + [(f"b{i}.jpg", 7, 2) for i in range(4)]
        return make_iwildcam_tar(tmp / "iwildcam_v2.0.tar.gz", rows)
    raise AssertionError(name)


@pytest.mark.parametrize("how", ["corrupted", "truncated"])
@pytest.mark.parametrize("name", ["har", "pamap2", "cifar10", "cifar100", "femnist", "iwildcam"])
def test_single_archive_datasets(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture, name: str, how: str
) -> None:
    good = _archive(name, tmp_path)
    expected = sha256_file(good)
    bad = corrupt(good, how)
    before = tree(tmp_path)
    out = tmp_path / "prepared" / name
    rc = main(
        ["data", "prepare", name, "--source", str(bad), "--expected-sha256", expected,
         "--partition", "iid", "--num-clients", "2", "--min-samples", "1", "--out", str(out)]
    )  # fmt: skip
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 2
    assert str(bad) in err and f"sha256:{expected}" in err and "checksum mismatch" in err
    assert tree(tmp_path) == before  # no output, no partial directory
    assert tree(data_dir) == []


@pytest.mark.parametrize("how", ["corrupted", "truncated"])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_multi_file_datasets(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture, name: str, how: str
) -> None:
    fx = make_mnist_dir(tmp_path / "good")
    checks = [f"{p.name}={sha256_file(p)}" for p in sorted(fx.path.iterdir())]
    source = tmp_path / "source"
    shutil.copytree(fx.path, source)
    victim = source / "t10k-images-idx3-ubyte.gz"
    corrupt(victim, how).replace(victim)
    before = tree(tmp_path)
    args = ["data", "prepare", name, "--source", str(source), "--partition", "iid"]
    for check in checks:
        args += ["--expected-sha256", check]
    rc = main([*args, "--num-clients", "2", "--min-samples", "1", "--out", str(tmp_path / "o")])
    err = " ".join(capsys.readouterr().err.split())
    expected = sha256_file(fx.path / "t10k-images-idx3-ubyte.gz")
    assert rc == 2 and str(victim) in err and f"sha256:{expected}" in err
    assert tree(tmp_path) == before and tree(data_dir) == []
