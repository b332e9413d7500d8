"""MNIST and Fashion-MNIST from their four published IDX files.

Published layout (the same for both; give ``--source`` the directory holding them)::

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz

IDX is big-endian: a magic number (``0x00000803`` for 3-D uint8 images, ``0x00000801``
for 1-D uint8 labels), one 32-bit size per dimension, then the bytes. Training and test
sets are joined (70,000 images; each client gets its own train/test split); images are
``(1, 28, 28)`` float32 in [0, 1].
"""

from __future__ import annotations

import gzip
import struct

import numpy as np

from htfl.datasets.base import LoadedDataset
from htfl.workstation.datasets.upstream import ArchiveLoader, ResolvedFile, layout_error

__all__ = ["FILES", "FashionMNISTLoader", "MNISTLoader", "read_idx"]

FILES = (
    ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
)


def read_idx(data: bytes, ndim: int) -> np.ndarray:
    """Decode one uncompressed IDX file of uint8 values with ``ndim`` dimensions."""
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{len(data)} bytes is too short for an IDX header")
    zero, dtype, dims = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08 or dims != ndim:
        raise ValueError(
            f"magic {data[:4].hex()} is not a {ndim}-D uint8 IDX file (want 000008{ndim:02x})"
        )
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"header says {shape} but {body.size} values follow")
    return body.reshape(shape)


class _IDXLoader(ArchiveLoader):
    def parse(self, files: list[ResolvedFile]) -> LoadedDataset:
        by_name = {f.name: f for f in files}
        xs, ys = [], []
        for images_name, labels_name in FILES:
            images = self._read(by_name[images_name], 3)
            labels = self._read(by_name[labels_name], 1)
            if images.shape[0] != labels.shape[0]:
                raise layout_error(
                    by_name[images_name].path,
                    f"{images.shape[0]} images but {labels.shape[0]} labels in {labels_name}",
                )
            xs.append(images)
            ys.append(labels)
        x = np.concatenate(xs)[:, None, :, :].astype(np.float32) / np.float32(255.0)
        y = np.concatenate(ys).astype(np.int64)
        if y.size and y.max() > 9:
            raise layout_error(by_name[FILES[0][1]].path, f"label {y.max()} outside 0..9")
        return LoadedDataset(
            name=self.name,
            x=x,
            y=y,
            num_classes=10,
            input_shape=tuple(x.shape[1:]),
        )

    @staticmethod
    def _read(file: ResolvedFile, ndim: int) -> np.ndarray:
        try:
            with gzip.open(file.path, "rb") as fh:
                return read_idx(fh.read(), ndim)
        except (OSError, EOFError, ValueError) as err:
            raise layout_error(file.path, f"not a gzipped IDX file ({err})") from None


class MNISTLoader(_IDXLoader):
    name = "mnist"


class FashionMNISTLoader(_IDXLoader):
    name = "fashion-mnist"
