"""Small archives in the exact published layouts, built from known arrays.

Each builder writes the archive and returns what a correct loader must read back from it,
so tests compare values, not just shapes. Nothing here touches the network.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import pickle
import struct
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from htfl.datasets.integrity import sha256_file
from htfl.workstation.datasets.har import ROOT as HAR_ROOT
from htfl.workstation.datasets.har import SIGNALS
from htfl.workstation.datasets.pamap2 import NUM_COLUMNS


@dataclass
class Fixture:
    path: Path
    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray | None = None

    @property
    def sha256(self) -> str:
        return sha256_file(self.path)


def _uci_number(value: float) -> str:
    """UCI HAR's text format: '  1.8085150e-004' (7 decimals, 3-digit exponent)."""
    mantissa, exponent = f"{value:.7e}".split("e")
    return f"{mantissa}e{int(exponent):+04d}"


def har_windows(
    subjects: dict[str, list[int]], per_class: int, seed: int = 0, length: int = 128
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per split: x (N, 9, length), labels 1..6, subjects; class-dependent sine waves."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    out = {}
    for split, ids in subjects.items():
        xs, ys, ss = [], [], []
        for subject in ids:
            for label in range(1, 7):
                for _ in range(per_class):
                    phase = rng.uniform(0, 2 * np.pi, size=(9, 1))
                    wave = np.sin(2 * np.pi * label * t / 32.0 + phase)
                    xs.append((wave + rng.normal(0, 0.2, size=(9, length))).astype(np.float32))
                    ys.append(label)
                    ss.append(subject)
        order = rng.permutation(len(ys))
        out[split] = (
            np.stack(xs)[order],
            np.asarray(ys, dtype=np.int64)[order],
            np.asarray(ss, dtype=np.int64)[order],
        )
    return out


def make_har_zip(
    path: Path,
    subjects: dict[str, list[int]] | None = None,
    per_class: int = 2,
    *,
    wrapped: bool = False,
    seed: int = 0,
) -> Fixture:
    """``UCI HAR Dataset.zip`` (or, ``wrapped``, UCI's download zip holding it)."""
    subjects = subjects or {"train": [1, 3], "test": [2]}
    data = har_windows(subjects, per_class, seed)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{HAR_ROOT}/README.txt", "Human Activity Recognition Using Smartphones\n")
        zf.writestr(f"__MACOSX/{HAR_ROOT}/._README.txt", b"\x00\x05\x16\x07")
        for split, (x, y, s) in data.items():
            base = f"{HAR_ROOT}/{split}"
            for c, signal in enumerate(SIGNALS):
                lines = ["  " + "  ".join(_uci_number(v) for v in row) for row in x[:, c, :]]
                zf.writestr(
                    f"{base}/Inertial Signals/{signal}_{split}.txt", "\n".join(lines) + "\n"
                )
            zf.writestr(f"{base}/y_{split}.txt", "".join(f"{v}\n" for v in y))
            zf.writestr(f"{base}/subject_{split}.txt", "".join(f"{v}\n" for v in s))
            zf.writestr(f"{base}/X_{split}.txt", "  0.0000000e+000\n" * len(y))  # 561 features
    if wrapped:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("UCI HAR Dataset.names", "UCI HAR\n")
            zf.writestr("UCI HAR Dataset.zip", inner.getvalue())
    else:
        path.write_bytes(inner.getvalue())
    x = np.concatenate([data[s][0] for s in ("train", "test") if s in data])
    y = np.concatenate([data[s][1] for s in ("train", "test") if s in data]) - 1
    g = np.concatenate([data[s][2] for s in ("train", "test") if s in data])
    # The file holds 7 decimals: compare against what was written.
    x = np.asarray([[[float(_uci_number(v)) for v in ch] for ch in w] for w in x], np.float32)
    return Fixture(path, x, y, g)


def pamap2_rows(
    subject: int, segments: list[tuple[int, int]], seed: int = 0, nan_rows: tuple[int, ...] = ()
) -> np.ndarray:
    """Rows (n, 54): timestamp, activity, heart rate, 3 IMUs; IMU value = row*100 + column."""
    rows = []
    t = 0.0
    for activity, n in segments:
        for _ in range(n):
            row = np.full(NUM_COLUMNS, np.nan)
            row[0] = round(t, 2)
            row[1] = activity
            row[2] = np.nan if len(rows) % 9 else 100.0 + subject  # heart rate ~9 Hz
            index = len(rows)
            row[3:] = index * 100.0 + np.arange(3, NUM_COLUMNS)
            rows.append(row)
            t += 0.01
    table = np.asarray(rows)
    for r in nan_rows:  # a dropped IMU packet: every IMU column of the row is NaN
        table[r, 3:] = np.nan
    return table


def _pamap2_text(table: np.ndarray) -> str:
    def fmt(v: float, col: int) -> str:
        if np.isnan(v):
            return "NaN"
        return f"{int(v)}" if col == 1 else f"{v:.5f}"

    return "".join(" ".join(fmt(v, c) for c, v in enumerate(row)) + "\n" for row in table)


def make_pamap2_zip(path: Path, tables: dict[int, np.ndarray], *, wrapped: bool = True) -> Path:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("PAMAP2_Dataset/readme.pdf", b"%PDF-1.4\n")
        for subject, table in tables.items():
            zf.writestr(f"PAMAP2_Dataset/Protocol/subject{subject}.dat", _pamap2_text(table))
        zf.writestr("PAMAP2_Dataset/Optional/subject101.dat", _pamap2_text(tables[min(tables)]))
    if wrapped:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("PAMAP2_Dataset.zip", inner.getvalue())
    else:
        path.write_bytes(inner.getvalue())
    return path


def _cifar_pickle(batch: dict) -> bytes:
    # Upstream pickles were written by Python 2: byte-string keys, protocol 2.
    return pickle.dumps({k.encode(): v for k, v in batch.items()}, protocol=2)


def make_cifar_tar(path: Path, kind: str = "cifar10", per_batch: int = 6, seed: int = 0) -> Fixture:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    with tarfile.open(path, "w:gz") as tar:

        def add(name: str, payload: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))

        if kind == "cifar10":
            names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
            add("cifar-10-batches-py/batches.meta", _cifar_pickle({"label_names": ["a"] * 10}))
            add("cifar-10-batches-py/readme.html", b"<html></html>")
            for name in names:
                data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
                labels = rng.integers(0, 10, size=per_batch).tolist()
                add(
                    f"cifar-10-batches-py/{name}",
                    _cifar_pickle(
                        {
                            "batch_label": b"batch",
                            "labels": labels,
                            "data": data,
                            "filenames": [b"x.png"] * per_batch,
                        }
                    ),
                )
                xs.append(data)
                ys.append(labels)
        else:
            add("cifar-100-python/meta", _cifar_pickle({"fine_label_names": ["a"] * 100}))
            for name in ("train", "test"):
                data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
                fine = rng.integers(0, 100, size=per_batch).tolist()
                coarse = [f // 5 for f in fine]
                add(
                    f"cifar-100-python/{name}",
                    _cifar_pickle(
                        {
                            "filenames": [b"x.png"] * per_batch,
                            "batch_label": b"batch",
                            "fine_labels": fine,
                            "coarse_labels": coarse,
                            "data": data,
                        }
                    ),
                )
                xs.append(data)
                ys.append(fine)
    x = np.concatenate(xs).reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    return Fixture(path, x, np.concatenate(ys).astype(np.int64))


def _idx(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def make_mnist_dir(directory: Path, n_train: int = 12, n_test: int = 5, seed: int = 0) -> Fixture:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        for name, arr in (
            (f"{prefix}-images-idx3-ubyte.gz", images),
            (f"{prefix}-labels-idx1-ubyte.gz", labels),
        ):
            with gzip.open(directory / name, "wb") as fh:
                fh.write(_idx(arr))
        xs.append(images)
        ys.append(labels)
    x = np.concatenate(xs)[:, None].astype(np.float32) / 255.0
    return Fixture(directory, x, np.concatenate(ys).astype(np.int64))


def make_femnist_zip(
    path: Path, writers: dict[str, int], *, layout: str = "all_data", seed: int = 0
) -> Fixture:
    """LEAF json: ``femnist/data/all_data/all_data_*.json`` or ``train/`` + ``test/``."""
    rng = np.random.default_rng(seed)
    user_data = {}
    for user, n in writers.items():
        x = np.round(rng.uniform(0, 1, size=(n, 784)), 4)
        y = rng.integers(0, 62, size=n)
        user_data[user] = (x, y)

    def doc(users: list[str], part: slice) -> bytes:
        return json.dumps(
            {
                "users": users,
                "num_samples": [len(user_data[u][1][part]) for u in users],
                "user_data": {
                    u: {"x": user_data[u][0][part].tolist(), "y": user_data[u][1][part].tolist()}
                    for u in users
                },
            }
        ).encode()

    names = list(writers)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if layout == "all_data":
            half = len(names) // 2
            zf.writestr("femnist/data/all_data/all_data_0.json", doc(names[:half], slice(None)))
            zf.writestr("femnist/data/all_data/all_data_1.json", doc(names[half:], slice(None)))
            order = names
        else:  # LEAF's sampled split: first 3 samples of each writer in train, rest in test
            zf.writestr(
                "femnist/data/train/all_data_0_niid_0_keep_0_train_9.json", doc(names, slice(0, 3))
            )
            zf.writestr(
                "femnist/data/test/all_data_0_niid_0_keep_0_test_9.json", doc(names, slice(3, None))
            )
            order = None
    if order is not None:
        x = np.concatenate([user_data[u][0] for u in order])
        y = np.concatenate([user_data[u][1] for u in order])
        g = np.concatenate([[u] * len(user_data[u][1]) for u in order])
    else:
        x = np.concatenate(
            [user_data[u][0][:3] for u in names] + [user_data[u][0][3:] for u in names]
        )
        y = np.concatenate(
            [user_data[u][1][:3] for u in names] + [user_data[u][1][3:] for u in names]
        )
        g = np.concatenate([[u] * 3 for u in names] + [[u] * (writers[u] - 3) for u in names])
    return Fixture(
        path,
        x.reshape(-1, 1, 28, 28).astype(np.float32),
        y.astype(np.int64),
        np.asarray(g, dtype=object),
    )


#: One solid colour per upstream label, so decoded images can be checked after JPEG.
IWILDCAM_COLOURS = {
    0: (128, 128, 128),
    3: (250, 10, 10),
    7: (10, 250, 10),
    11: (10, 10, 250),
    15: (250, 250, 10),
}


def make_iwildcam_tar(
    path: Path, rows: list[tuple[str, int, int]], *, metadata_first: bool = True
) -> Path:
    """WILDS v2.0 layout under ``iwildcam_v2.0/``; rows are (filename, y, location)."""
    from PIL import Image

    meta = io.StringIO()
    writer = csv.writer(meta)
    writer.writerow(
        [
            "",
            "split",
            "location_remapped",
            "location",
            "sequence_remapped",
            "sequence",
            "y",
            "datetime",
            "filename",
            "image_id",
        ]
    )
    for i, (filename, y, location) in enumerate(rows):
        writer.writerow(
            [
                i,
                "train",
                location,
                100 + location,
                i,
                f"seq{i}",
                y,
                "2013-06-09 16:08:13.000",
                filename,
                f"id{i}",
            ]
        )
    images = {}
    for filename, y, _ in rows:
        buf = io.BytesIO()
        Image.new("RGB", (40, 30), IWILDCAM_COLOURS[y]).save(buf, format="JPEG", quality=95)
        images[filename] = buf.getvalue()
    with tarfile.open(path, "w:gz") as tar:

        def add(name: str, payload: bytes) -> None:
            info = tarfile.TarInfo(f"iwildcam_v2.0/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))

        if metadata_first:
            add("metadata.csv", meta.getvalue().encode())
        add("categories.csv", b"y,category_id,name\n0,0,empty\n")
        for filename, payload in images.items():
            add(f"train/{filename}", payload)
        if not metadata_first:
            add("metadata.csv", meta.getvalue().encode())
    return path


def corrupt(path: Path, how: str) -> Path:
    """A copy of ``path`` with one byte flipped in the middle, or cut to half its size."""
    data = bytearray(path.read_bytes())
    out = path.with_name(f"{how}-{path.name}")
    if how == "truncated":
        out.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[len(data) // 2] ^= 0xFF
        out.write_bytes(bytes(data))
    return out
