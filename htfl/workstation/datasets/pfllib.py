"""Read a PFLlib / HtFLlib dataset folder: the same clients, the same samples, the same order.

PFLlib and HtFLlib (github.com/TsingZ0/PFLlib, github.com/TsingZ0/HtFLlib, ``dataset/`` and
``system/utils/data_utils.py``) keep a partitioned dataset as::

    <name>/config.json          num_clients, num_classes, partition, alpha, ...,
                                "Size of samples for labels in clients": per client
                                [[label, count], ...] over train and test together
    <name>/train/<i>.npz        client i's train split: ``np.savez_compressed(f, data=d)``
    <name>/test/<i>.npz         with ``d = {"x": ndarray, "y": ndarray}``

``np.savez`` stores the dict as a 0-d *object* array, i.e. a pickle. Dataset folders come
from other people, so the pickle is never given to :mod:`pickle` as such: a restricted
unpickler accepts only what NumPy needs to rebuild arrays (``ndarray``, ``matrix``, ``dtype``
and the array reconstructor), and builtin dicts, lists and strings; anything else (a class, a
function, ``os.system``) is refused before it is looked up.

Every check names the file it failed on: a missing client file, a payload that is not a
dict of ``x``/``y`` arrays, lengths that differ, sample shapes that differ between
clients, non-integer labels or labels outside ``num_classes``, and per-client label counts
that disagree with ``config.json``. Writing goes through :mod:`htfl.datasets.store`'s
staging, so a refused or interrupted import leaves nothing under ``--out``.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import htfl
from htfl.datasets.integrity import sha256_file
from htfl.datasets.shard import _label_counts
from htfl.datasets.store import (
    FORMAT,
    MANIFEST,
    Manifest,
    _staging,
    _str_keys,
    _write_npz,
    content_sha256,
    shard_file_name,
)

__all__ = ["IMPORTED", "PfllibFormatError", "import_pfllib", "read_client_file"]

#: The partition kind an imported manifest records: the split was made elsewhere.
IMPORTED = "imported"
_SIZES_KEY = "Size of samples for labels in clients"
_CLIENT_FILE = re.compile(r"^(\d+)\.npz$")

#: (module, name) pairs NumPy's array pickles refer to; nothing else is resolved.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # PFLlib's AmazonReview folder: x is scipy's ``todense()`` output, an np.matrix (an
        # ndarray subclass, rebuilt by the same reconstructor; read as a plain array below).
        # NumPy before 1.16 named it by its defining module.
        ("numpy", "matrix"),
        ("numpy.matrixlib.defmatrix", "matrix"),
    }
)


class PfllibFormatError(ValueError):
    """The folder is not a readable PFLlib/HtFLlib dataset; the message names the file."""


class _ArraysOnly(pickle.Unpickler):
    """Rebuilds dicts, lists and NumPy arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refused to load {module}.{name}: only NumPy arrays in a dict are allowed"
        )


def _read_npy(fh: Any, where: Path) -> Any:
    """One ``.npy`` member; an object array is unpickled with :class:`_ArraysOnly`."""
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(fh)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = fmt.read_array_header_2_0(fh)
    else:
        raise PfllibFormatError(f"{where}: unsupported .npy version {version}")
    if dtype.hasobject:
        return _ArraysOnly(fh).load()
    count = int(np.prod(shape)) if shape else 1
    data = np.frombuffer(fh.read(count * dtype.itemsize), dtype=dtype, count=count)
    return data.reshape(shape, order="F" if fortran else "C")


def read_client_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` from one client's ``.npz``; :class:`PfllibFormatError` naming ``path``."""
    if not path.is_file():
        raise PfllibFormatError(f"{path}: missing (config.json lists this client)")
    try:
        with zipfile.ZipFile(path) as zf:
            if "data.npy" not in zf.namelist():
                raise PfllibFormatError(
                    f"{path}: has no 'data' array (members: {', '.join(zf.namelist()) or 'none'})"
                )
            with zf.open("data.npy") as member:
                payload = _read_npy(member, path)
    except PfllibFormatError:
        raise
    except pickle.UnpicklingError as err:
        raise PfllibFormatError(f"{path}: unsafe or unreadable pickle ({err})") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise PfllibFormatError(f"{path}: not a readable .npz ({err})") from None
    if isinstance(payload, np.ndarray) and payload.dtype.hasobject and payload.shape == ():
        payload = payload.item()
    if not isinstance(payload, dict) or set(payload) != {"x", "y"}:
        what = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise PfllibFormatError(f"{path}: 'data' must be a dict with keys x and y, got {what}")
    x, y = payload["x"], payload["y"]
    if isinstance(x, np.matrix):  # AmazonReview: feature rows as a 2-d matrix
        x = np.asarray(x)
    for key, value in (("x", x), ("y", y)):
        if not isinstance(value, np.ndarray) or value.dtype.hasobject:
            raise PfllibFormatError(
                f"{path}: data[{key!r}] must be a numeric array, got {type(value).__name__}"
                + (f" of {value.dtype}" if isinstance(value, np.ndarray) else "")
            )
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or x.ndim < 2:
        raise PfllibFormatError(
            f"{path}: data['x'] must be numeric with one row per sample, got {x.dtype} {x.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
        raise PfllibFormatError(
            f"{path}: data['y'] must be a 1-d integer label array, got {y.dtype} {y.shape}"
        )
    if len(x) != len(y):
        raise PfllibFormatError(f"{path}: data['x'] has {len(x)} samples but data['y'] {len(y)}")
    return x, y


@dataclass(frozen=True)
class _Config:
    num_clients: int
    num_classes: int
    sizes: list[dict[int, int]] | None  # per client, train + test together
    doc: dict[str, Any]


def _read_config(folder: Path) -> _Config:
    path = folder / "config.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise PfllibFormatError(f"{path}: missing (every PFLlib/HtFLlib dataset has one)") from None
    except (OSError, ValueError) as err:
        raise PfllibFormatError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(doc, dict):
        raise PfllibFormatError(f"{path}: expected a JSON object")
    problems = [
        key
        for key in ("num_clients", "num_classes")
        if isinstance(doc.get(key), bool) or not isinstance(doc.get(key), int) or doc[key] < 1
    ]
    if problems:
        raise PfllibFormatError(f"{path}: {', '.join(problems)} must be integers >= 1")
    sizes = None
    if _SIZES_KEY in doc:
        raw = doc[_SIZES_KEY]
        try:
            sizes = [{int(label): int(count) for label, count in client} for client in raw]
        except (TypeError, ValueError):
            raise PfllibFormatError(
                f"{path}: {_SIZES_KEY!r} must list [[label, count], ...] per client"
            ) from None
        if len(sizes) != doc["num_clients"]:
            raise PfllibFormatError(
                f"{path}: {_SIZES_KEY!r} has {len(sizes)} clients but num_clients is "
                f"{doc['num_clients']}"
            )
    return _Config(int(doc["num_clients"]), int(doc["num_classes"]), sizes, doc)


def _client_files(folder: Path, split: str, num_clients: int) -> list[Path]:
    directory = folder / split
    if not directory.is_dir():
        raise PfllibFormatError(f"{directory}: missing (expected {split}/0.npz ...)")
    extra = sorted(
        p.name
        for p in directory.iterdir()
        if (m := _CLIENT_FILE.match(p.name)) and int(m.group(1)) >= num_clients
    )
    if extra:
        raise PfllibFormatError(
            f"{directory / extra[0]}: config.json says num_clients = {num_clients}, but "
            f"{split}/ holds {len(extra)} more client file(s)"
        )
    return [directory / f"{i}.npz" for i in range(num_clients)]


def _check_labels(path: Path, y: np.ndarray, num_classes: int) -> None:
    if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise PfllibFormatError(
            f"{path}: label {bad} is outside 0..{num_classes - 1} (config.json num_classes)"
        )


def import_pfllib(
    folder: str | os.PathLike, out: str | os.PathLike, *, name: str = "", force: bool = False
) -> Manifest:
    """Import the PFLlib/HtFLlib dataset ``folder`` into htfl shards at ``out``.

    Client i's shard holds ``train/i.npz`` and ``test/i.npz`` unchanged (same samples, same
    order; x as float32 as htfl's loader feeds it, y as int64). Every file is read and
    checked before anything is written; the write itself is atomic.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PfllibFormatError(f"{folder}: not a directory")
    config = _read_config(folder)
    files = {split: _client_files(folder, split, config.num_clients) for split in ("train", "test")}
    clients: list[dict[str, np.ndarray]] = []
    sample_shape: tuple[int, ...] | None = None
    first: Path | None = None
    for index in range(config.num_clients):
        arrays: dict[str, np.ndarray] = {}
        for split in ("train", "test"):
            path = files[split][index]
            x, y = read_client_file(path)
            if sample_shape is None:
                sample_shape, first = tuple(x.shape[1:]), path
            elif tuple(x.shape[1:]) != sample_shape:
                raise PfllibFormatError(
                    f"{path}: samples have shape {tuple(x.shape[1:])} but {first} has "
                    f"{sample_shape}"
                )
            _check_labels(path, y, config.num_classes)
            arrays[f"{split}_x"] = np.ascontiguousarray(x, dtype=np.float32)
            arrays[f"{split}_y"] = np.ascontiguousarray(y, dtype=np.int64)
        if config.sizes is not None:
            held = _label_counts(np.concatenate([arrays["train_y"], arrays["test_y"]]))
            if held != config.sizes[index]:
                raise PfllibFormatError(
                    f"{files['train'][index]} + {files['test'][index]}: client {index} holds "
                    f"label counts {held} but config.json lists {config.sizes[index]}"
                )
        clients.append(arrays)
    assert sample_shape is not None  # num_clients >= 1
    return _write(folder, Path(out), config, clients, sample_shape, name or folder.name, force)


def _write(
    folder: Path,
    out: Path,
    config: _Config,
    clients: list[dict[str, np.ndarray]],
    sample_shape: tuple[int, ...],
    name: str,
    force: bool,
) -> Manifest:
    entries: list[dict[str, Any]] = []
    num_train = sum(len(c["train_y"]) for c in clients)
    num_samples = num_train + sum(len(c["test_y"]) for c in clients)
    with _staging(out, force) as stage:
        for index, arrays in enumerate(clients):
            file = shard_file_name(index)
            path = stage / file
            _write_npz(path, arrays)
            entries.append(
                {
                    "client_index": index,
                    "file": file,
                    "sha256": sha256_file(path),
                    "bytes": path.stat().st_size,
                    "num_train": len(arrays["train_y"]),
                    "num_test": len(arrays["test_y"]),
                    "label_counts": _str_keys(_label_counts(arrays["train_y"])),
                    "test_label_counts": _str_keys(_label_counts(arrays["test_y"])),
                    "group": None,
                }
            )
        source_files = sorted(
            [folder / "config.json"]
            + [
                folder / s / f"{i}.npz"
                for s in ("train", "test")
                for i in range(config.num_clients)
            ]
        )
        doc: dict[str, Any] = {
            "format": FORMAT,
            "dataset": name,
            "num_classes": config.num_classes,
            "input_shape": list(sample_shape),
            "num_samples": num_samples,
            "source": [
                {"name": str(p.relative_to(folder)), "sha256": sha256_file(p)} for p in source_files
            ],
            "loader_options": {"format": "pfllib", "config": config.doc},
            "partition": {"kind": IMPORTED},
            "num_clients": config.num_clients,
            "seed": 0,
            # informational: the split was made by PFLlib (its train_ratio), not by htfl
            "train_fraction": round(num_train / num_samples, 6) if num_samples else 0.0,
            "clients": entries,
        }
        doc["content_sha256"] = content_sha256(doc)
        doc["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        doc["htfl_version"] = htfl.__version__
        (stage / MANIFEST).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return Manifest.read(out / MANIFEST)
