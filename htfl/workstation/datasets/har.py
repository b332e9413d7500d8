"""UCI HAR (Human Activity Recognition Using Smartphones): 30 subjects, 6 activities.

Published layout (inside ``UCI HAR Dataset.zip``, which UCI's current download wraps in
another zip)::

    UCI HAR Dataset/{train,test}/Inertial Signals/<signal>_{train,test}.txt   (N x 128)
    UCI HAR Dataset/{train,test}/y_{train,test}.txt                           labels 1..6
    UCI HAR Dataset/{train,test}/subject_{train,test}.txt                     subjects 1..30

The raw inertial windows (2.56 s at 50 Hz, 128 readings) of both official splits are
joined: 10,299 samples of shape ``(9, 128)``, channels in :data:`SIGNALS` order (body
acceleration, body gyroscope, total acceleration; x/y/z each), as PFLlib/HtFLlib use them
with HARCNN. ``groups`` is the subject (1..30), so ``natural`` gives one client per subject;
each client's train/test split is then made per client, as for every other partition.
"""

from __future__ import annotations

import io

import numpy as np

from htfl.datasets.base import LoadedDataset
from htfl.workstation.datasets.upstream import (
    Archive,
    ArchiveLoader,
    ResolvedFile,
    keep_top_groups,
    layout_error,
)

__all__ = ["ACTIVITIES", "ROOT", "SIGNALS", "HARLoader", "member_names"]

ROOT = "UCI HAR Dataset"
SIGNALS = (
    "body_acc_x",
    "body_acc_y",
    "body_acc_z",
    "body_gyro_x",
    "body_gyro_y",
    "body_gyro_z",
    "total_acc_x",
    "total_acc_y",
    "total_acc_z",
)
ACTIVITIES = (
    "walking",
    "walking_upstairs",
    "walking_downstairs",
    "sitting",
    "standing",
    "laying",
)
SPLITS = ("train", "test")


def member_names(split: str) -> dict[str, str]:
    """Archive member per role (each signal, ``y``, ``subject``) of one official split."""
    base = f"{ROOT}/{split}"
    names = {s: f"{base}/Inertial Signals/{s}_{split}.txt" for s in SIGNALS}
    names["y"] = f"{base}/y_{split}.txt"
    names["subject"] = f"{base}/subject_{split}.txt"
    return names


def _table(data: bytes, name: str, path) -> np.ndarray:
    try:
        return np.loadtxt(io.BytesIO(data), dtype=np.float32, ndmin=2)
    except ValueError as err:
        raise layout_error(path, f"{name} is not a whitespace-separated table ({err})") from None


class HARLoader(ArchiveLoader):
    """UCI HAR raw inertial windows; ``top_subjects`` keeps the subjects with most windows."""

    name = "har"

    def __init__(self, *args, top_subjects: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.top_subjects = top_subjects

    def options(self) -> dict:
        return {"top_subjects": self.top_subjects} if self.top_subjects else {}

    def parse(self, files: list[ResolvedFile]) -> LoadedDataset:
        (file,) = files
        wanted = [n for split in SPLITS for n in member_names(split).values()]
        with Archive.open(file.path) as outer:
            archive = outer
            if member_names("train")["y"] not in set(outer.names()):
                inner = outer.nested(".zip")
                if inner is None:
                    raise layout_error(file.path, f"no '{ROOT}/' directory and no inner zip")
                archive = inner
            try:
                data = archive.read_all(wanted)
            except KeyError as err:
                raise layout_error(file.path, str(err.args[0])) from None
        xs, ys, subjects = [], [], []
        for split in SPLITS:
            names = member_names(split)
            channels = [_table(data[names[s]], names[s], file.path) for s in SIGNALS]
            shapes = {c.shape for c in channels}
            if len(shapes) != 1:
                raise layout_error(file.path, f"{split} signals differ in shape: {sorted(shapes)}")
            y = _table(data[names["y"]], names["y"], file.path).reshape(-1)
            subject = _table(data[names["subject"]], names["subject"], file.path).reshape(-1)
            n = channels[0].shape[0]
            if y.size != n or subject.size != n:
                raise layout_error(
                    file.path,
                    f"{split}: {n} windows but {y.size} labels and {subject.size} subjects",
                )
            if y.size and (y.min() < 1 or y.max() > len(ACTIVITIES)):
                raise layout_error(file.path, f"{names['y']}: labels outside 1..6")
            xs.append(np.stack(channels, axis=1))
            ys.append(y.astype(np.int64) - 1)
            subjects.append(subject.astype(np.int64))
        x = np.concatenate(xs).astype(np.float32, copy=False)
        y = np.concatenate(ys)
        groups = np.concatenate(subjects)
        x, y, groups = keep_top_groups(x, y, groups, self.top_subjects)
        return LoadedDataset(
            name=self.name,
            x=x,
            y=y,
            num_classes=len(ACTIVITIES),
            input_shape=tuple(x.shape[1:]),
            groups=groups,
        )
