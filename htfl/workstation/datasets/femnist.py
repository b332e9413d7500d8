"""FEMNIST (LEAF): handwritten digits and letters, 62 classes, one natural client per writer.

FEMNIST has no single published archive: LEAF's ``data/femnist/preprocess.sh`` turns NIST
Special Database 19 into json files, in LEAF's published format::

    .../all_data/all_data_0.json ...          (every writer; preferred when present)
    .../train/*.json and .../test/*.json       (LEAF's sampled split; merged per writer)

each ``{"users": [...], "num_samples": [...], "user_data": {user: {"x": [[784 floats]],
"y": [labels]}}}``. Zip or tar that directory and name it with ``--source`` together with
its ``--expected-sha256`` (there is no upstream checksum to pin). Images are
``(1, 28, 28)`` float32 as LEAF stores them (values in [0, 1]); ``groups`` is the writer id,
so ``natural`` gives one client per writer. ``top_writers`` keeps the writers with the most
samples (FEMNIST has about 3,500), which is what a fleet of tens of devices needs.
"""

from __future__ import annotations

import json
import re

import numpy as np

from htfl.datasets.base import LoadedDataset
from htfl.workstation.datasets.upstream import (
    Archive,
    ArchiveLoader,
    ResolvedFile,
    keep_top_groups,
    layout_error,
)

__all__ = ["FEMNISTLoader", "NUM_CLASSES"]

NUM_CLASSES = 62
_ALL = re.compile(r"(?:^|/)all_data/[^/]+\.json$")
_SPLIT = re.compile(r"(?:^|/)(train|test)/[^/]+\.json$")


class FEMNISTLoader(ArchiveLoader):
    name = "femnist"

    def __init__(self, *args, top_writers: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.top_writers = top_writers

    def options(self) -> dict:
        return {"top_writers": self.top_writers} if self.top_writers else {}

    def parse(self, files: list[ResolvedFile]) -> LoadedDataset:
        (file,) = files
        with Archive.open(file.path) as archive:
            names = archive.names()
            use_all = any(_ALL.search(n) for n in names)
            pattern = _ALL if use_all else _SPLIT
            xs: list[np.ndarray] = []
            ys: list[np.ndarray] = []
            writers: list[np.ndarray] = []
            for name, data in archive.iter_members(lambda n: bool(pattern.search(n))):
                self._read_json(data, name, file, xs, ys, writers)
        if not xs:
            raise layout_error(file.path, "no LEAF json under all_data/ or train/ + test/")
        x = np.concatenate(xs).reshape(-1, 1, 28, 28)
        y = np.concatenate(ys)
        groups = np.concatenate(writers)
        x, y, groups = keep_top_groups(x, y, groups, self.top_writers)
        return LoadedDataset(
            name=self.name,
            x=x,
            y=y,
            num_classes=NUM_CLASSES,
            input_shape=(1, 28, 28),
            groups=groups,
        )

    @staticmethod
    def _read_json(
        data: bytes,
        name: str,
        file: ResolvedFile,
        xs: list[np.ndarray],
        ys: list[np.ndarray],
        writers: list[np.ndarray],
    ) -> None:
        try:
            doc = json.loads(data)
            users = doc["users"]
            user_data = doc["user_data"]
        except (ValueError, KeyError, TypeError) as err:
            raise layout_error(file.path, f"{name}: not a LEAF json ({err})") from None
        for user in users:
            record = user_data.get(user)
            if record is None:
                raise layout_error(file.path, f"{name}: user {user!r} has no user_data")
            x = np.asarray(record["x"], dtype=np.float32)
            y = np.asarray(record["y"], dtype=np.int64)
            if x.ndim != 2 or x.shape[1] != 784 or x.shape[0] != y.size:
                raise layout_error(
                    file.path, f"{name}: user {user!r} has x {x.shape} and y {y.shape}"
                )
            if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
                raise layout_error(file.path, f"{name}: user {user!r} has labels outside 0..61")
            xs.append(x)
            ys.append(y)
            writers.append(np.full(y.size, str(user), dtype=object))
