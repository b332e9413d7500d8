"""Each loader reads a fixture archive in the upstream layout and returns exactly its data."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from htfl.datasets import (
    LoadedDataset,
    UnknownDatasetError,
    get_loader,
    known_datasets,
    register_loader,
)
from htfl.datasets.integrity import ChecksumError
from htfl.workstation.datasets.catalog import make_loader
from htfl.workstation.datasets.pamap2 import ACTIVITIES, CHANNEL_COLUMNS
from htfl.workstation.datasets.upstream import UnverifiedSourceError
from tests.datasets.fixtures import (
    IWILDCAM_COLOURS,
    make_cifar_tar,
    make_femnist_zip,
    make_har_zip,
    make_iwildcam_tar,
    make_mnist_dir,
    make_pamap2_zip,
    pamap2_rows,
)

# --------------------------------------------------------------------------- UCI HAR


@pytest.mark.parametrize("wrapped", [False, True], ids=["inner-zip", "uci-download"])
def test_har_reads_the_published_layout(tmp_path: Path, wrapped: bool) -> None:
    fx = make_har_zip(tmp_path / "UCI_HAR_Dataset.zip", wrapped=wrapped)
    loaded = make_loader("har", source=fx.path, expected_sha256=fx.sha256).load()
    assert loaded.input_shape == (9, 128)
    assert loaded.num_classes == 6
    np.testing.assert_allclose(loaded.x, fx.x, rtol=1e-6)
    np.testing.assert_array_equal(loaded.y, fx.y)
    np.testing.assert_array_equal(loaded.groups, fx.groups)
    assert sorted(set(loaded.groups.tolist())) == [1, 2, 3]
    assert set(loaded.y.tolist()) == set(range(6))
    assert loaded.provenance["files"] == [
        {"name": "UCI HAR Dataset.zip", "file": fx.path.name, "sha256": fx.sha256}
    ]


def test_har_top_subjects_keeps_the_largest(tmp_path: Path) -> None:
    fx = make_har_zip(tmp_path / "har.zip", subjects={"train": [1, 3, 5], "test": [2]})
    loaded = make_loader("har", source=fx.path, expected_sha256=fx.sha256, top_subjects=2).load()
    # All subjects have the same number of windows: ties keep the smaller ids.
    assert sorted(set(loaded.groups.tolist())) == [1, 2]
    assert loaded.provenance["options"] == {"top_subjects": 2}


def test_har_archive_without_the_layout_is_rejected(tmp_path: Path) -> None:
    import zipfile

    bad = tmp_path / "other.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("something/else.txt", "x")
    from htfl.datasets.integrity import sha256_file

    with pytest.raises(ValueError, match="published archive"):
        make_loader("har", source=bad, expected_sha256=sha256_file(bad)).load()


def test_har_is_checked_against_the_real_upstream_checksum(tmp_path: Path) -> None:
    fx = make_har_zip(tmp_path / "UCI HAR Dataset.zip")
    with pytest.raises(ChecksumError) as err:
        make_loader("har", source=fx.path).load()
    message = str(err.value)
    assert str(fx.path) in message
    assert "2045e435c955214b38145fb5fa00776c72814f01b203fec405152dac7d5bfeb0" in message
    assert "c00b803081a5c797cd5e4b83700a9810b38d53d9d84e01917e090e1fdbc81031" in message


# --------------------------------------------------------------------------- PAMAP2


def test_pamap2_windows_follow_activity_runs(tmp_path: Path) -> None:
    # subject 101: 48 rows lying (1), 5 transient (0), 70 walking (4) with a dropped packet,
    # 20 watching TV (9, not a protocol activity); subject 102: 50 rope jumping (24).
    t101 = pamap2_rows(101, [(1, 48), (0, 5), (4, 70), (9, 20)], nan_rows=(58,))
    t102 = pamap2_rows(102, [(24, 50)])
    path = make_pamap2_zip(
        tmp_path / "pamap2+physical+activity+monitoring.zip", {101: t101, 102: t102}
    )
    from htfl.datasets.integrity import sha256_file

    loaded = make_loader(
        "pamap2", source=path, expected_sha256=sha256_file(path), window=32, step=16
    ).load()
    assert loaded.input_shape == (27, 32)
    assert loaded.num_classes == 12
    label = {a: i for i, a in enumerate(ACTIVITIES)}
    # 48 rows -> 2 windows (0, 16); 70 -> 3 (0, 16, 32); 50 -> 2; activities 0 and 9 dropped.
    assert loaded.y.tolist() == [label[1]] * 2 + [label[4]] * 3 + [label[24]] * 2
    assert loaded.groups.tolist() == [101] * 5 + [102] * 2
    cols = np.asarray(CHANNEL_COLUMNS)
    # A window holds rows start..start+31 of its run; channel c is column CHANNEL_COLUMNS[c].
    np.testing.assert_array_equal(loaded.x[1], t101[16:48][:, cols].T)
    walking_start = 53
    second = loaded.x[3]  # walking window at offset 16: rows 69..100, no gap
    np.testing.assert_array_equal(second, t101[walking_start + 16 : walking_start + 48][:, cols].T)
    first = loaded.x[2]  # rows 53..84 contain the dropped packet (row 58): carried forward
    expected = t101[walking_start : walking_start + 32][:, cols].copy()
    expected[58 - walking_start] = expected[57 - walking_start]
    np.testing.assert_array_equal(first, expected.T)
    assert not np.isnan(loaded.x).any()


def test_pamap2_has_no_pinned_checksum_and_says_how_to_verify(tmp_path: Path) -> None:
    path = make_pamap2_zip(tmp_path / "PAMAP2_Dataset.zip", {101: pamap2_rows(101, [(1, 40)])})
    from htfl.datasets.integrity import sha256_file

    with pytest.raises(UnverifiedSourceError, match=sha256_file(path)):
        make_loader("pamap2", source=path).load()


# --------------------------------------------------------------------------- CIFAR


def test_cifar10_reads_the_python_batches(tmp_path: Path) -> None:
    fx = make_cifar_tar(tmp_path / "cifar-10-python.tar.gz", "cifar10")
    loaded = make_loader("cifar10", source=fx.path, expected_sha256=fx.sha256).load()
    assert loaded.input_shape == (3, 32, 32)
    assert loaded.num_classes == 10
    assert loaded.num_samples == 6 * 6  # five data batches and the test batch
    np.testing.assert_allclose(loaded.x, fx.x)
    np.testing.assert_array_equal(loaded.y, fx.y)
    assert loaded.groups is None


def test_cifar10_checked_against_the_published_md5(tmp_path: Path) -> None:
    fx = make_cifar_tar(tmp_path / "cifar-10-python.tar.gz", "cifar10")
    with pytest.raises(ChecksumError, match="md5:c58f30108f718f92721af3b95e74349a"):
        make_loader("cifar10", source=fx.path).load()


@pytest.mark.parametrize("labels,num_classes", [("fine", 100), ("coarse", 20)])
def test_cifar100_fine_or_coarse(tmp_path: Path, labels: str, num_classes: int) -> None:
    fx = make_cifar_tar(tmp_path / "cifar-100-python.tar.gz", "cifar100")
    loaded = make_loader(
        "cifar100", source=fx.path, expected_sha256=fx.sha256, labels=labels
    ).load()
    assert loaded.num_classes == num_classes
    np.testing.assert_allclose(loaded.x, fx.x)
    expected = fx.y if labels == "fine" else fx.y // 5
    np.testing.assert_array_equal(loaded.y, expected)


def test_cifar_pickle_cannot_run_code(tmp_path: Path) -> None:
    import io
    import pickle
    import tarfile

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            payload = pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    from htfl.datasets.integrity import sha256_file

    with pytest.raises(ValueError, match=r"may not reference __builtin__\.print"):
        make_loader("cifar10", source=path, expected_sha256=sha256_file(path)).load()


# --------------------------------------------------------------------------- MNIST


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_mnist_family_reads_idx_gzip(tmp_path: Path, name: str) -> None:
    fx = make_mnist_dir(tmp_path / name)
    expected = {p.name: sha256_of(p) for p in fx.path.iterdir()}
    loaded = make_loader(name, source=fx.path, expected_sha256=expected).load()
    assert loaded.input_shape == (1, 28, 28)
    assert loaded.num_samples == 17
    np.testing.assert_allclose(loaded.x, fx.x)
    np.testing.assert_array_equal(loaded.y, fx.y)
    assert {f["name"] for f in loaded.provenance["files"]} == set(expected)


def test_mnist_checked_file_by_file_against_published_md5(tmp_path: Path) -> None:
    fx = make_mnist_dir(tmp_path / "mnist")
    with pytest.raises(ChecksumError) as err:
        make_loader("mnist", source=fx.path).load()
    assert "train-images-idx3-ubyte.gz" in str(err.value)
    assert "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873" in str(err.value)


def test_mnist_bad_magic_is_a_layout_error(tmp_path: Path) -> None:
    import gzip

    fx = make_mnist_dir(tmp_path / "mnist")
    with gzip.open(fx.path / "train-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(b"\x00\x00\x08\x03" + b"\x00" * 20)
    expected = {p.name: sha256_of(p) for p in fx.path.iterdir()}
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz"):
        make_loader("mnist", source=fx.path, expected_sha256=expected).load()


def sha256_of(path: Path) -> str:
    from htfl.datasets.integrity import sha256_file

    return sha256_file(path)


# --------------------------------------------------------------------------- FEMNIST


def test_femnist_leaf_all_data_by_writer(tmp_path: Path) -> None:
    fx = make_femnist_zip(tmp_path / "femnist.zip", {"f0001_11": 5, "f0002_45": 8, "f0417_02": 4})
    loaded = make_loader("femnist", source=fx.path, expected_sha256=fx.sha256).load()
    assert loaded.num_classes == 62
    assert loaded.input_shape == (1, 28, 28)
    np.testing.assert_allclose(loaded.x, fx.x)
    np.testing.assert_array_equal(loaded.y, fx.y)
    assert loaded.groups.tolist() == fx.groups.tolist()


def test_femnist_leaf_train_test_merged_and_top_writers(tmp_path: Path) -> None:
    fx = make_femnist_zip(tmp_path / "femnist.zip", {"f1": 5, "f2": 9, "f3": 7}, layout="split")
    loaded = make_loader("femnist", source=fx.path, expected_sha256=fx.sha256).load()
    np.testing.assert_allclose(loaded.x, fx.x)
    assert sorted(set(loaded.groups.tolist())) == ["f1", "f2", "f3"]
    top = make_loader("femnist", source=fx.path, expected_sha256=fx.sha256, top_writers=2).load()
    assert sorted(set(top.groups.tolist())) == ["f2", "f3"]
    assert top.num_samples == 16


def test_femnist_needs_an_explicit_checksum(tmp_path: Path) -> None:
    fx = make_femnist_zip(tmp_path / "femnist.zip", {"f1": 4})
    with pytest.raises(UnverifiedSourceError, match="--expected-sha256"):
        make_loader("femnist", source=fx.path).load()


# --------------------------------------------------------------------------- iWildCam


IWILDCAM_ROWS = [
    # filename, upstream label, camera
    *[(f"a{i:02d}.jpg", 3, 10) for i in range(6)],
    *[(f"b{i:02d}.jpg", 7, 11) for i in range(4)],
    *[(f"c{i:02d}.jpg", 7, 12) for i in range(3)],
    *[(f"d{i:02d}.jpg", 11, 12) for i in range(2)],
    *[(f"e{i:02d}.jpg", 0, 10) for i in range(9)],  # "empty", the most frequent
    ("f00.jpg", 15, 13),
]


@pytest.mark.parametrize("metadata_first", [True, False])
def test_iwildcam_class_trimmed_subset(tmp_path: Path, metadata_first: bool) -> None:
    path = make_iwildcam_tar(
        tmp_path / "iwildcam_v2.0.tar.gz", IWILDCAM_ROWS, metadata_first=metadata_first
    )
    from htfl.datasets.integrity import sha256_file

    loaded = make_loader(
        "iwildcam",
        source=path,
        expected_sha256=sha256_file(path),
        classes=2,
        exclude_labels=[0],
        image_size=8,
    ).load()
    # Excluding "empty", the two most frequent labels are 7 (7 images) and 3 (6).
    assert loaded.num_classes == 2
    assert loaded.input_shape == (3, 8, 8)
    assert loaded.num_samples == 13
    counts = dict(zip(*np.unique(loaded.y, return_counts=True), strict=True))
    assert counts == {0: 7, 1: 6}  # relabelled by decreasing frequency
    assert sorted(set(loaded.groups.tolist())) == [10, 11, 12]
    for new, upstream in ((0, 7), (1, 3)):
        colour = np.asarray(IWILDCAM_COLOURS[upstream], dtype=np.float32) / 255
        mean = loaded.x[loaded.y == new].mean(axis=(0, 2, 3))
        np.testing.assert_allclose(mean, colour, atol=0.05)


def test_iwildcam_cameras_and_max_per_class(tmp_path: Path) -> None:
    path = make_iwildcam_tar(tmp_path / "iwildcam_v2.0.tar.gz", IWILDCAM_ROWS)
    from htfl.datasets.integrity import sha256_file

    loaded = make_loader(
        "iwildcam",
        source=path,
        expected_sha256=sha256_file(path),
        classes=3,
        exclude_labels=[0],
        cameras=2,
        max_per_class=3,
        image_size=4,
    ).load()
    # Classes 7, 3, 11; cameras by remaining images: 10 (6), 12 (5): camera 11 dropped.
    assert sorted(set(loaded.groups.tolist())) == [10, 12]
    counts = dict(zip(*np.unique(loaded.y, return_counts=True), strict=True))
    assert counts == {0: 3, 1: 3, 2: 2}  # label 7 -> 0 (c00..c02), 3 -> 1, 11 -> 2
    assert loaded.provenance["options"]["max_per_class"] == 3


# --------------------------------------------------------------------------- digits


def test_digits_loader_unchanged() -> None:
    loaded = make_loader("digits").load()
    assert loaded.num_samples == 1797
    assert loaded.provenance is None


@pytest.fixture(scope="module")
def digits() -> LoadedDataset:
    return get_loader("digits").load()


def test_digits_loader_shapes_and_dtypes(digits: LoadedDataset) -> None:
    assert digits.name == "digits"
    assert digits.x.dtype == np.float32
    assert digits.y.dtype == np.int64
    assert digits.x.shape == (1797, 1, 8, 8)
    assert digits.y.shape == (1797,)
    assert digits.input_shape == (1, 8, 8)
    assert digits.num_classes == 10
    assert digits.groups is None
    assert float(digits.x.min()) == 0.0
    assert float(digits.x.max()) == 1.0
    np.testing.assert_array_equal(np.unique(digits.y), np.arange(10))


#: sha256 over dtype, shape and bytes of x then y, as scikit-learn 1.9.1's ``load_digits()``
#: gave them through the old loader (``images / 16`` as float32, int64 targets). A fixed input:
#: the packaged htfl/datasets/data/digits.npz must reproduce it (see its README.md).
DIGITS_ARRAYS_SHA256 = "dc03189b4746b9956cbef3f3f059983e30dbf36fc76c971951ba57233a7c7071"


def test_digits_are_the_arrays_scikit_learn_gave(digits: LoadedDataset) -> None:
    digest = hashlib.sha256()
    for array in (digits.x, digits.y):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    assert digest.hexdigest() == DIGITS_ARRAYS_SHA256
    assert digits.x.flags.c_contiguous  # same memory order as before, not only the same values


def test_registry_lists_digits_and_unknown_name_error_lists_known() -> None:
    assert "digits" in known_datasets()
    assert known_datasets() == sorted(known_datasets())
    with pytest.raises(UnknownDatasetError, match="digits") as info:
        get_loader("no-such-dataset")
    assert isinstance(info.value, ValueError)
    assert "no-such-dataset" in str(info.value)


def test_register_loader_rejects_duplicates_and_non_loaders() -> None:
    class Again:
        name = "digits"

        def load(self) -> LoadedDataset:  # pragma: no cover - never called
            raise AssertionError

    with pytest.raises(ValueError, match="already registered"):
        register_loader(Again())
    with pytest.raises(TypeError):
        register_loader(object())  # type: ignore[arg-type]


def test_loaded_dataset_validates_fields() -> None:
    x = np.zeros((4, 3), dtype=np.float32)
    y = np.array([0, 1, 0, 1], dtype=np.int64)
    LoadedDataset("ok", x, y, 2, (3,), None)
    with pytest.raises(ValueError, match="float32"):
        LoadedDataset("bad", x.astype(np.float64), y, 2, (3,), None)
    with pytest.raises(ValueError, match="input_shape"):
        LoadedDataset("bad", x, y, 2, (4,), None)
    with pytest.raises(ValueError, match="labels"):
        LoadedDataset("bad", x, y, 1, (3,), None)
    with pytest.raises(ValueError, match="groups"):
        LoadedDataset("bad", x, y, 2, (3,), np.zeros(3))
