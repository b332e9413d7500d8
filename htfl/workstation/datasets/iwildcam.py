"""iWildCam 2020 (WILDS v2.0): camera-trap photos, one natural client per camera trap.

Published layout (the WILDS ``iwildcam_v2.0`` archive, optionally under one top-level
directory)::

    metadata.csv     one row per image: split, location_remapped, y, filename, ...
    categories.csv   y -> species name
    train/<filename> every image (JPEG, height 448)

The full set is about 200k images in 182 classes and 323 cameras (12 GB), far more than an
edge fleet trains on, so the loader builds a class-trimmed subset, in this order:

1. ``classes``: keep the ``classes`` most frequent labels (ties: smaller label), relabelled
   0..classes-1 by decreasing frequency; ``exclude_labels`` are dropped first (e.g. the
   "empty" category);
2. ``cameras``: keep the cameras with the most remaining images (``None``: all);
3. ``max_per_class``: keep at most this many images per class, the first ones in
   ``filename`` order (``None``: all).

Only the selected images are decoded (Pillow), converted to RGB and resized to
``image_size`` x ``image_size``: samples are ``(3, image_size, image_size)`` float32 in
[0, 1]. ``groups`` is the camera (``location_remapped``). For a compressed tar, the
archive is read twice if ``metadata.csv`` is not stored before the images.
"""

from __future__ import annotations

import csv
import io

import numpy as np

from htfl.datasets.base import LoadedDataset
from htfl.workstation.datasets.upstream import Archive, ArchiveLoader, ResolvedFile, layout_error

__all__ = ["IWildCamLoader", "select_rows"]


def select_rows(
    labels: np.ndarray,
    cameras: np.ndarray,
    filenames: np.ndarray,
    *,
    classes: int,
    top_cameras: int | None,
    max_per_class: int | None,
    exclude_labels: tuple[int, ...] = (),
) -> tuple[np.ndarray, dict[int, int]]:
    """Row indices of the subset and the map upstream label -> new label."""
    keep = ~np.isin(labels, np.asarray(exclude_labels, dtype=labels.dtype))
    values, counts = np.unique(labels[keep], return_counts=True)
    order = sorted(range(values.size), key=lambda i: (-counts[i], values[i]))[:classes]
    chosen = [int(values[i]) for i in order]
    relabel = {label: new for new, label in enumerate(chosen)}
    keep &= np.isin(labels, chosen)
    if top_cameras is not None:
        cams, cam_counts = np.unique(cameras[keep], return_counts=True)
        top = sorted(range(cams.size), key=lambda i: (-cam_counts[i], cams[i]))[:top_cameras]
        keep &= np.isin(cameras, cams[top])
    rows = np.flatnonzero(keep)
    if max_per_class is not None:
        rows = rows[np.argsort(filenames[rows], kind="stable")]
        taken: dict[int, int] = {}
        picked = []
        for r in rows:
            label = int(labels[r])
            if taken.get(label, 0) < max_per_class:
                taken[label] = taken.get(label, 0) + 1
                picked.append(r)
        rows = np.sort(np.asarray(picked, dtype=np.int64))
    return rows, relabel


class IWildCamLoader(ArchiveLoader):
    name = "iwildcam"

    def __init__(
        self,
        *args,
        classes: int = 10,
        cameras: int | None = None,
        max_per_class: int | None = None,
        image_size: int = 32,
        exclude_labels: tuple[int, ...] | list[int] = (),
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if classes < 1 or image_size < 4:
            raise ValueError("iwildcam: classes must be >= 1 and image_size >= 4")
        self.classes = int(classes)
        self.cameras = cameras
        self.max_per_class = max_per_class
        self.image_size = int(image_size)
        self.exclude_labels = tuple(int(v) for v in exclude_labels)

    def options(self) -> dict:
        return {
            "classes": self.classes,
            "cameras": self.cameras,
            "max_per_class": self.max_per_class,
            "image_size": self.image_size,
            "exclude_labels": list(self.exclude_labels),
        }

    def parse(self, files: list[ResolvedFile]) -> LoadedDataset:
        (file,) = files
        with Archive.open(file.path) as archive:
            first_pass = archive.iter_members(lambda n: n.rsplit("/", 1)[-1] == "metadata.csv")
            try:
                meta_name, meta = next(first_pass, (None, None))
            finally:
                first_pass.close()
            if meta is None or meta_name is None:
                raise layout_error(file.path, "no metadata.csv")
            prefix = meta_name[: -len("metadata.csv")]
            labels, cameras, filenames = self._read_metadata(meta, file)
            rows, relabel = select_rows(
                labels,
                cameras,
                filenames,
                classes=self.classes,
                top_cameras=self.cameras,
                max_per_class=self.max_per_class,
                exclude_labels=self.exclude_labels,
            )
            wanted = {f"{prefix}train/{filenames[r]}": int(r) for r in rows}
            size = self.image_size
            x = np.empty((rows.size, 3, size, size), dtype=np.float32)
            slot = {int(r): i for i, r in enumerate(rows)}
            seen = set()
            for name, data in archive.iter_members(lambda n: n in wanted):
                x[slot[wanted[name]]] = self._decode(data, name, file)
                seen.add(name)
        missing = sorted(set(wanted) - seen)
        if missing:
            raise layout_error(file.path, f"{len(missing)} images missing, e.g. {missing[0]}")
        y = np.asarray([relabel[int(labels[r])] for r in rows], dtype=np.int64)
        return LoadedDataset(
            name=self.name,
            x=x,
            y=y,
            num_classes=len(relabel),
            input_shape=(3, size, size),
            groups=cameras[rows],
        )

    @staticmethod
    def _read_metadata(
        data: bytes, file: ResolvedFile
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
        fields = set(reader.fieldnames or ())
        camera_field = "location_remapped" if "location_remapped" in fields else "location"
        needed = {"y", "filename", camera_field}
        if not needed <= fields:
            raise layout_error(file.path, f"metadata.csv lacks columns {sorted(needed - fields)}")
        labels, cameras, filenames = [], [], []
        for line, row in enumerate(reader, start=2):
            try:
                labels.append(int(row["y"]))
                cameras.append(int(row[camera_field]))
            except (TypeError, ValueError):
                raise layout_error(file.path, f"metadata.csv line {line}: bad y/location") from None
            filenames.append(row["filename"])
        return (
            np.asarray(labels, dtype=np.int64),
            np.asarray(cameras, dtype=np.int64),
            np.asarray(filenames, dtype=object),
        )

    def _decode(self, data: bytes, name: str, file: ResolvedFile) -> np.ndarray:
        try:
            from PIL import Image, UnidentifiedImageError
        except ImportError:
            raise RuntimeError("iWildCam images need pillow: pip install 'htfl[data]'") from None

        try:
            with Image.open(io.BytesIO(data)) as img:
                rgb = img.convert("RGB").resize(
                    (self.image_size, self.image_size), Image.Resampling.BILINEAR
                )
        except (UnidentifiedImageError, OSError) as err:
            raise layout_error(file.path, f"{name}: not an image ({err})") from None
        return np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)
