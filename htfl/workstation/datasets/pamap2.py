"""PAMAP2 Physical Activity Monitoring: 9 subjects, 12 protocol activities, 3 IMUs at 100 Hz.

Published layout (``PAMAP2_Dataset.zip``, which UCI's current download wraps in another
zip): ``PAMAP2_Dataset/Protocol/subject101.dat`` ... ``subject109.dat``, one text row per
timestamp with 54 space-separated columns::

    1 timestamp (s), 2 activityID, 3 heart rate (bpm),
    4-20 IMU hand, 21-37 IMU chest, 38-54 IMU ankle, each IMU:
        temperature, acc ±16g xyz, acc ±6g xyz, gyro xyz, magnetometer xyz, orientation (4)

Missing readings are ``NaN``. This loader keeps the 12 protocol activities
(:data:`ACTIVITIES`; activity 0, "transient", and the optional ones are dropped), uses 27
channels (±16g acceleration, gyroscope and magnetometer of each IMU; the ±6g accelerometer
saturates and the orientation is documented as invalid), fills gaps inside a run of one
activity by carrying the last reading forward (the first one backward), and cuts each run
into windows of ``window`` readings every ``step`` (default 256 / 128: 2.56 s with 50 %
overlap, like UCI HAR). A window never spans two activities. Samples are ``(27, window)``;
``groups`` is the subject (101..109).
"""

from __future__ import annotations

import io
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

__all__ = ["ACTIVITIES", "CHANNEL_COLUMNS", "NUM_COLUMNS", "PAMAP2Loader", "windows"]

#: Protocol activity ids (label i is ACTIVITIES[i]).
ACTIVITIES = (1, 2, 3, 4, 5, 6, 7, 12, 13, 16, 17, 24)
ACTIVITY_NAMES = (
    "lying",
    "sitting",
    "standing",
    "walking",
    "running",
    "cycling",
    "nordic walking",
    "ascending stairs",
    "descending stairs",
    "vacuum cleaning",
    "ironing",
    "rope jumping",
)
NUM_COLUMNS = 54
_IMU_FIRST = (3, 20, 37)  # 0-based column of each IMU's temperature
#: 0-based columns of the 27 channels: per IMU acc16 xyz, gyro xyz, magnetometer xyz.
CHANNEL_COLUMNS = tuple(
    base + offset for base in _IMU_FIRST for offset in (1, 2, 3, 7, 8, 9, 10, 11, 12)
)
_SUBJECT_FILE = re.compile(r"(?:^|/)Protocol/subject(\d{3})\.dat$")


def _fill_gaps(segment: np.ndarray) -> np.ndarray | None:
    """Carry each channel's last reading over NaNs (the first one backward); None if empty."""
    valid = ~np.isnan(segment)
    if not valid.any(axis=0).all():
        return None  # a channel with no reading at all in this run
    rows = np.arange(segment.shape[0])[:, None]
    last = np.maximum.accumulate(np.where(valid, rows, -1), axis=0)
    first = np.argmax(valid, axis=0)
    last = np.where(last < 0, first[None, :], last)
    return np.take_along_axis(segment, last, axis=0)


def windows(
    activity: np.ndarray, signals: np.ndarray, window: int, step: int
) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``(n, channels, window)`` and labels of one subject's recording."""
    label_of = {a: i for i, a in enumerate(ACTIVITIES)}
    xs: list[np.ndarray] = []
    ys: list[int] = []
    change = np.flatnonzero(np.diff(activity)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [activity.size]])
    for a, b in zip(starts, ends, strict=True):
        act = int(activity[a])
        if act not in label_of or b - a < window:
            continue
        segment = _fill_gaps(signals[a:b])
        if segment is None:
            continue
        for s in range(0, segment.shape[0] - window + 1, step):
            xs.append(segment[s : s + window].T)
            ys.append(label_of[act])
    if not xs:
        return np.empty((0, signals.shape[1], window), np.float32), np.empty(0, np.int64)
    return np.stack(xs).astype(np.float32), np.asarray(ys, dtype=np.int64)


class PAMAP2Loader(ArchiveLoader):
    """PAMAP2 protocol recordings cut into activity windows (see the module docstring)."""

    name = "pamap2"

    def __init__(
        self,
        *args,
        window: int = 256,
        step: int = 128,
        top_subjects: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if window < 4 or step < 1:
            raise ValueError(f"pamap2: window must be >= 4 and step >= 1, got {window}/{step}")
        self.window = int(window)
        self.step = int(step)
        self.top_subjects = top_subjects

    def options(self) -> dict:
        out: dict = {"window": self.window, "step": self.step}
        if self.top_subjects:
            out["top_subjects"] = self.top_subjects
        return out

    def parse(self, files: list[ResolvedFile]) -> LoadedDataset:
        (file,) = files
        per_subject: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        with Archive.open(file.path) as outer:
            archive = outer
            if not any(_SUBJECT_FILE.search(n) for n in outer.names()):
                inner = outer.nested(".zip")
                if inner is None:
                    raise layout_error(file.path, "no Protocol/subject1NN.dat files")
                archive = inner
            # One subject file in memory at a time (they are 100-250 MB of text each).
            for name, data in archive.iter_members(lambda n: bool(_SUBJECT_FILE.search(n))):
                subject = int(_SUBJECT_FILE.search(name).group(1))  # type: ignore[union-attr]
                table = self._read_table(data, name, file)
                del data
                per_subject[subject] = windows(
                    table[:, 0].astype(np.int64), table[:, 1:], self.window, self.step
                )
        if not per_subject:
            raise layout_error(file.path, "no Protocol/subject1NN.dat files")
        xs, ys, groups = [], [], []
        for subject in sorted(per_subject):
            x, y = per_subject.pop(subject)
            xs.append(x)
            ys.append(y)
            groups.append(np.full(y.size, subject, dtype=np.int64))
        x = np.concatenate(xs)
        y = np.concatenate(ys)
        g = np.concatenate(groups)
        x, y, g = keep_top_groups(x, y, g, self.top_subjects)
        return LoadedDataset(
            name=self.name,
            x=x,
            y=y,
            num_classes=len(ACTIVITIES),
            input_shape=(len(CHANNEL_COLUMNS), self.window),
            groups=g,
        )

    @staticmethod
    def _read_table(data: bytes, name: str, file: ResolvedFile) -> np.ndarray:
        """Columns: activity id, then the 27 channels (float64, NaN for gaps)."""
        first = data.split(b"\n", 1)[0].split()
        if len(first) != NUM_COLUMNS:
            raise layout_error(
                file.path, f"{name}: expected {NUM_COLUMNS} columns per row, got {len(first)}"
            )
        try:
            return np.loadtxt(
                io.BytesIO(data), dtype=np.float64, usecols=(1, *CHANNEL_COLUMNS), ndmin=2
            )
        except ValueError as err:
            raise layout_error(file.path, f"{name}: unreadable row ({err})") from None
