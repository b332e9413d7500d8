"""`htfl data import-pfllib`: PFLlib/HtFLlib dataset folders in, htfl shards out.

The folders are written here from the format's description (PFLlib/HtFLlib
``dataset/utils/dataset_utils.py``: ``np.savez_compressed(f, data={'x': X, 'y': Y})`` per
client and split, and ``config.json`` with ``num_clients``, ``num_classes`` and "Size of
samples for labels in clients" over train and test together), never with htfl's writer.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from htfl.cli import main
from htfl.datasets import Manifest, load_shard
from htfl.workstation.config.experiment import experiment_from_dict
from htfl.workstation.config.preflight import check_files, preflight
from htfl.workstation.datasets.pfllib import PfllibFormatError, import_pfllib


def _counts(y: np.ndarray) -> list[list[int]]:
    values, counts = np.unique(y, return_counts=True)
    return [[int(v), int(c)] for v, c in zip(values, counts, strict=True)]


def write_pfllib(
    root: Path,
    clients: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    num_classes: int,
) -> Path:
    """A dataset folder as PFLlib's ``save_file`` writes it."""
    for split in ("train", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
    sizes = []
    for i, (xtr, ytr, xte, yte) in enumerate(clients):
        with open(root / "train" / f"{i}.npz", "wb") as f:
            np.savez_compressed(f, data={"x": xtr, "y": ytr})
        with open(root / "test" / f"{i}.npz", "wb") as f:
            np.savez_compressed(f, data={"x": xte, "y": yte})
        sizes.append(_counts(np.concatenate([ytr, yte])))
    config = {
        "num_clients": len(clients),
        "num_classes": num_classes,
        "non_iid": True,
        "balance": False,
        "partition": "dir",
        "Size of samples for labels in clients": sizes,
        "alpha": 0.1,
        "batch_size": 10,
    }
    (root / "config.json").write_text(json.dumps(config))
    return root


def _clients(shape: tuple[int, ...], num_classes: int, sizes: list[int], seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        ntr = (3 * n) // 4
        x = rng.normal(size=(n, *shape)).astype(np.float32)
        y = rng.integers(0, num_classes, size=n).astype(np.int64)
        out.append((x[:ntr], y[:ntr], x[ntr:], y[ntr:]))
    return out


@pytest.mark.parametrize(
    ("shape", "num_classes"),
    [((3, 32, 32), 10), ((9, 1, 128), 6)],  # Cifar10-style images, HAR-style sensor windows
    ids=["image", "har"],
)
def test_same_clients_same_samples_same_order(
    tmp_path: Path, shape: tuple[int, ...], num_classes: int
) -> None:
    clients = _clients(shape, num_classes, [39, 12, 57])
    folder = write_pfllib(tmp_path / "Cifar10", clients, num_classes)
    manifest = import_pfllib(folder, tmp_path / "out")
    assert manifest.num_clients == 3 and manifest.num_classes == num_classes
    assert manifest.input_shape == shape and manifest.partition == {"kind": "imported"}
    assert manifest.dataset == "Cifar10"
    for i, (xtr, ytr, xte, yte) in enumerate(clients):
        shard = load_shard(tmp_path / "out", i)
        assert np.array_equal(shard.train_x, xtr) and np.array_equal(shard.train_y, ytr)
        assert np.array_equal(shard.test_x, xte) and np.array_equal(shard.test_y, yte)
        assert shard.train_x.dtype == np.float32 and shard.train_y.dtype == np.int64


def test_cli_prints_the_data_section_and_an_experiment_names_the_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_pfllib(tmp_path / "har", _clients((9, 1, 128), 6, [20, 24]), 6)
    out = tmp_path / "shards"
    assert main(["data", "import-pfllib", str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    manifest = Manifest.read(out)
    assert 'partition = "imported"' in printed and manifest.content_sha256 in printed
    raw = {
        "experiment": {"id": "imp", "rounds": 1},
        "algorithm": {"name": "local"},
        "data": {"dataset": "har", "partition": "imported", "manifest": str(out)},
        "devices": {"classes": {"jetson-nano": 2}},
        "models": {"family": "HtFE-sen-2"},  # the class's default cnn4 takes no 9x1x128 window
    }
    exp = experiment_from_dict(raw)
    assert check_files(exp) == []
    assert preflight(exp).data.shards_sha256 == manifest.content_sha256
    # an import named without its manifest is an error in the file, not a crash later
    raw["data"] = {"dataset": "har", "partition": "imported"}
    with pytest.raises(ValueError, match="data.partition"):
        experiment_from_dict(raw)


def _refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], folder: Path, names: str) -> str:
    out = tmp_path / "out"
    assert main(["data", "import-pfllib", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert names in err and "Traceback" not in err
    assert not out.exists()  # atomic: nothing half-imported
    assert not list(tmp_path.glob(".out.partial-*"))
    return err


def test_missing_client_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_pfllib(tmp_path / "d", _clients((1, 8, 8), 10, [20, 20, 20]), 10)
    (folder / "test" / "2.npz").unlink()
    _refused(tmp_path, capsys, folder, str(folder / "test" / "2.npz"))


def test_mismatched_shapes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clients = _clients((1, 8, 8), 10, [20, 20])
    clients[1] = _clients((1, 8, 9), 10, [20])[0]
    folder = write_pfllib(tmp_path / "d", clients, 10)
    err = _refused(tmp_path, capsys, folder, str(folder / "train" / "1.npz"))
    assert "(1, 8, 9)" in err


def test_labels_outside_num_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clients = _clients((1, 8, 8), 10, [20, 20])
    xtr, ytr, xte, yte = clients[1]
    yte = yte.copy()
    yte[0] = 10
    clients[1] = (xtr, ytr, xte, yte)
    folder = write_pfllib(tmp_path / "d", clients, 10)
    err = _refused(tmp_path, capsys, folder, str(folder / "test" / "1.npz"))
    assert "label 10" in err


def test_counts_disagree_with_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_pfllib(tmp_path / "d", _clients((1, 8, 8), 10, [20, 20]), 10)
    config = json.loads((folder / "config.json").read_text())
    config["Size of samples for labels in clients"][0][0][1] += 1
    (folder / "config.json").write_text(json.dumps(config))
    _refused(tmp_path, capsys, folder, "client 0 holds label counts")


def test_more_clients_than_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_pfllib(tmp_path / "d", _clients((1, 8, 8), 10, [20, 20]), 10)
    config = json.loads((folder / "config.json").read_text())
    config["num_clients"] = 1
    del config["Size of samples for labels in clients"]
    (folder / "config.json").write_text(json.dumps(config))
    _refused(tmp_path, capsys, folder, "num_clients = 1")


@pytest.mark.parametrize(
    "payload",
    [
        [np.zeros((2, 3)), np.zeros(2)],  # a list, not a dict
        {"x": np.zeros((2, 3))},  # no y
        {"x": np.zeros((2, 3)), "y": np.array([0.5, 1.0])},  # float labels
        {"x": np.zeros((2, 3)), "y": np.array([0, 1, 1])},  # lengths differ
        {"x": [[0.0, 1.0]], "y": [0]},  # lists, not arrays
    ],
    ids=["list", "no-y", "float-labels", "lengths", "lists"],
)
def test_a_pickle_that_is_not_a_dict_of_arrays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], payload: object
) -> None:
    folder = write_pfllib(tmp_path / "d", _clients((2, 3), 2, [8]), 2)
    config = json.loads((folder / "config.json").read_text())
    del config["Size of samples for labels in clients"]
    (folder / "config.json").write_text(json.dumps(config))
    bad = folder / "train" / "0.npz"
    obj = np.empty((), dtype=object)
    obj[()] = payload
    with open(bad, "wb") as f:
        np.savez_compressed(f, data=obj)
    with pytest.raises(PfllibFormatError, match=str(bad)):
        import_pfllib(folder, tmp_path / "out")
    _refused(tmp_path, capsys, folder, str(bad))


class _Exploit:
    """What a malicious folder would hold: unpickling it runs a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


def test_arbitrary_objects_are_not_unpickled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_pfllib(tmp_path / "d", _clients((2, 3), 2, [8]), 2)
    marker = tmp_path / "pwned"
    bad = folder / "test" / "0.npz"
    obj = np.empty((), dtype=object)
    obj[()] = {"x": np.zeros((2, 3)), "y": _Exploit(marker)}
    buf = io.BytesIO()
    np.lib.format.write_array(buf, obj, allow_pickle=True)
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("data.npy", buf.getvalue())
    # the file really is an exploit: NumPy's own loader with allow_pickle=True runs it
    with np.load(bad, allow_pickle=True) as npz:
        npz["data"]
    assert marker.exists()
    marker.unlink()
    err = _refused(tmp_path, capsys, folder, str(bad))
    assert "pathlib" in err and not marker.exists()
