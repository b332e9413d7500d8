"""CIFAR-10 and CIFAR-100, "python version" archives.

Published layout::

    cifar-10-python.tar.gz:  cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch
    cifar-100-python.tar.gz: cifar-100-python/train, test

Each member is a pickled dict (written by Python 2: byte-string keys) with ``data``, a
``(N, 3072)`` uint8 array (1024 red, then green, then blue values of a 32x32 image, row
major), and ``labels`` (CIFAR-10) or ``fine_labels`` / ``coarse_labels`` (CIFAR-100). The
official train and test sets are joined (60,000 images); every partition then makes its
own per-client train/test split. Images are ``(3, 32, 32)`` float32 in [0, 1].

The pickles are read with an unpickler that only admits the numpy array machinery a CIFAR
batch needs, so an archive that passed its checksum still cannot run code on load.
"""

from __future__ import annotations

import io
import pickle

import numpy as np

from htfl.datasets.base import LoadedDataset
from htfl.workstation.datasets.upstream import Archive, ArchiveLoader, ResolvedFile, layout_error

__all__ = ["CIFAR10Loader", "CIFAR100Loader", "MEMBERS", "read_batch"]

MEMBERS = {
    "cifar10": [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]
    + ["cifar-10-batches-py/test_batch"],
    "cifar100": ["cifar-100-python/train", "cifar-100-python/test"],
}

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle API
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a CIFAR batch may not reference {module}.{name}")


def read_batch(data: bytes) -> dict[str, object]:
    """One CIFAR pickle as a dict with str keys."""
    raw = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    if not isinstance(raw, dict):
        raise pickle.UnpicklingError(f"expected a dict, got {type(raw).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in raw.items()}


class _CIFARLoader(ArchiveLoader):
    label_key = "labels"
    num_classes = 10

    def parse(self, files: list[ResolvedFile]) -> LoadedDataset:
        (file,) = files
        names = MEMBERS[self.name]
        with Archive.open(file.path) as archive:
            try:
                members = archive.read_all(names)
            except KeyError as err:
                raise layout_error(file.path, str(err.args[0])) from None
        xs, ys = [], []
        for name in names:
            try:
                batch = read_batch(members.pop(name))
            except (pickle.UnpicklingError, EOFError, ValueError) as err:
                raise layout_error(file.path, f"{name}: not a CIFAR batch ({err})") from None
            data = np.asarray(batch.get("data"))
            labels = np.asarray(batch.get(self.label_key), dtype=np.int64)
            if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.size:
                raise layout_error(
                    file.path,
                    f"{name}: data {data.shape} / {self.label_key} {labels.shape} "
                    "are not (N, 3072) / (N,)",
                )
            xs.append(data.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32))
            ys.append(labels)
        x = np.concatenate(xs).astype(np.float32) / np.float32(255.0)
        return LoadedDataset(
            name=self.name,
            x=x,
            y=np.concatenate(ys),
            num_classes=self.num_classes,
            input_shape=(3, 32, 32),
        )


class CIFAR10Loader(_CIFARLoader):
    name = "cifar10"


class CIFAR100Loader(_CIFARLoader):
    """CIFAR-100 with its 100 fine labels, or the 20 superclasses (``labels="coarse"``)."""

    name = "cifar100"

    def __init__(self, *args, labels: str = "fine", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if labels not in ("fine", "coarse"):
            raise ValueError(f"cifar100: labels must be 'fine' or 'coarse', got {labels!r}")
        self.labels = labels
        self.label_key = f"{labels}_labels"
        self.num_classes = 100 if labels == "fine" else 20

    def options(self) -> dict:
        return {"labels": self.labels}
