"""Dataset loader interface and registry.

A *loader* turns a named dataset into one in-memory :class:`LoadedDataset` (all samples,
before any federated partitioning). Partitioning and train/test splitting happen later,
in :mod:`htfl.datasets.partition`, so every dataset gets the same partition semantics.

Adding a dataset (UCI HAR, PAMAP2, CIFAR-10/100, FEMNIST, MNIST, iWildCam, ...) means
writing a class with a ``name`` attribute and a ``load()`` method, then calling
:func:`register_loader` with an instance. Loaders that need configuration (a data root,
a download flag, a subset) take it in their constructor; ``load()`` itself takes no
arguments so that the registry can call it uniformly. Datasets with a natural client key
(a subject in HAR/PAMAP2, a writer in FEMNIST, a camera trap in iWildCam) return it in
``groups`` so the ``"natural"`` partition can use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "DatasetLoader",
    "LoadedDataset",
    "UnknownDatasetError",
    "get_loader",
    "known_datasets",
    "register_loader",
]


@dataclass(frozen=True, eq=False)
class LoadedDataset:
    """All samples of one dataset, as numpy arrays.

    Attributes:
        name: Registry name of the dataset.
        x: Features, float32, shape ``(N, *input_shape)`` (images are channels-first).
        y: Integer class labels in ``[0, num_classes)``, int64, shape ``(N,)``.
        num_classes: Number of classes of the task (some may be absent from ``y``).
        input_shape: Shape of one sample, e.g. ``(1, 8, 8)``.
        groups: Natural partition key per sample (subject, writer, camera id...),
            shape ``(N,)``, or ``None`` when the dataset has no such key.
        provenance: Where the samples came from (upstream files with their sha256, the
            loader's options), recorded in shard manifests; ``None`` for built-in data.

    ``eq=False`` because field-wise ``==`` on numpy arrays is ambiguous; instances compare
    and hash by identity.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int
    input_shape: tuple[int, ...]
    groups: np.ndarray | None = None
    provenance: dict | None = None

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.x.dtype != np.float32:
            problems.append(f"x must be float32, got {self.x.dtype}")
        if self.y.dtype != np.int64:
            problems.append(f"y must be int64, got {self.y.dtype}")
        if self.y.ndim != 1:
            problems.append(f"y must be 1-D, got shape {self.y.shape}")
        if self.x.shape[:1] != self.y.shape[:1]:
            problems.append(f"x has {self.x.shape[0]} samples but y has {self.y.shape[0]}")
        if tuple(self.x.shape[1:]) != tuple(self.input_shape):
            problems.append(
                f"x sample shape {tuple(self.x.shape[1:])} != input_shape {self.input_shape}"
            )
        if self.num_classes < 1:
            problems.append(f"num_classes must be >= 1, got {self.num_classes}")
        elif self.y.size and (self.y.min() < 0 or self.y.max() >= self.num_classes):
            problems.append(f"labels must lie in [0, {self.num_classes})")
        if self.groups is not None and self.groups.shape != self.y.shape:
            problems.append(f"groups must have shape {self.y.shape}, got {self.groups.shape}")
        if problems:
            raise ValueError(f"invalid dataset {self.name!r}: " + "; ".join(problems))

    @property
    def num_samples(self) -> int:
        return int(self.y.shape[0])


@runtime_checkable
class DatasetLoader(Protocol):
    """Anything with a registry ``name`` and a ``load()`` returning a LoadedDataset."""

    name: str

    def load(self) -> LoadedDataset: ...


class UnknownDatasetError(ValueError):
    """Raised by :func:`get_loader` for a name that no loader is registered under."""


_REGISTRY: dict[str, DatasetLoader] = {}


def register_loader(loader: DatasetLoader, *, replace: bool = False) -> DatasetLoader:
    """Register ``loader`` under ``loader.name`` and return it.

    Raises ValueError if the name is already taken, unless ``replace`` is true.
    Note that :mod:`htfl.datasets.shard` caches loaded datasets; call
    ``htfl.datasets.clear_caches()`` after replacing a loader that was already used.
    """
    if not isinstance(loader, DatasetLoader):
        raise TypeError(f"{loader!r} does not implement DatasetLoader (name + load())")
    name = loader.name
    if not isinstance(name, str) or not name:
        raise ValueError(f"loader name must be a non-empty string, got {name!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"a loader is already registered as {name!r}; pass replace=True")
    _REGISTRY[name] = loader
    return loader


def get_loader(name: str) -> DatasetLoader:
    """Return the loader registered as ``name``; UnknownDatasetError lists the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(known_datasets()) or "(none)"
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {known}") from None


def known_datasets() -> list[str]:
    """Names of all registered datasets, sorted."""
    return sorted(_REGISTRY)


def data_dir() -> Path:
    """Where htfl keeps archives and shards: ``$HTFL_DATA_DIR``, else ``~/.cache/htfl``."""
    env = os.environ.get("HTFL_DATA_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "htfl"
