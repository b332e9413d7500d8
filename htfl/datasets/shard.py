"""One client's slice of a partitioned dataset, as used by a (simulated or real) device.

Every process that serves clients calls :func:`client_shard` with the same
``(dataset, spec, num_clients, seed)``; because partitioning is deterministic, all of
them agree on who holds what without exchanging indices. The loaded dataset and the
partition are cached per process, so serving several clients costs one load.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

import htfl.datasets.digits  # noqa: F401  (registers the built-in loaders)
from htfl.datasets.base import LoadedDataset, get_loader
from htfl.datasets.partition import PartitionSpec, partition_indices, split_train_test

__all__ = ["ClientShard", "clear_caches", "client_shard", "partition_summary"]


@dataclass(frozen=True, eq=False)
class ClientShard:
    """Train and test arrays of one client (copies; safe to modify).

    ``eq=False``: numpy fields make field-wise ``==`` ambiguous, so shards compare by
    identity.
    """

    client_index: int
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    input_shape: tuple[int, ...]

    def label_counts(self) -> dict[int, int]:
        """Number of training samples per label, for labels present in train (sorted)."""
        return _label_counts(self.train_y)

    @property
    def num_train(self) -> int:
        return int(self.train_y.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.test_y.shape[0])


def _label_counts(y: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(y, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


@lru_cache(maxsize=8)
def _load(dataset: str) -> LoadedDataset:
    loaded = get_loader(dataset).load()
    # The cached arrays are shared by every caller: make accidental writes fail loudly.
    for array in (loaded.x, loaded.y, loaded.groups):
        if array is not None:
            array.setflags(write=False)
    return loaded


@lru_cache(maxsize=32)
def _partition(
    dataset: str, spec: PartitionSpec, num_clients: int, seed: int
) -> tuple[np.ndarray, ...]:
    loaded = _load(dataset)
    parts = partition_indices(loaded.y, num_clients, spec, seed, groups=loaded.groups)
    for part in parts:
        part.setflags(write=False)
    return tuple(parts)


@lru_cache(maxsize=32)
def _client_splits(
    dataset: str, spec: PartitionSpec, num_clients: int, seed: int, train_fraction: float
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    loaded = _load(dataset)
    splits = []
    for client, part in enumerate(_partition(dataset, spec, num_clients, seed)):
        train, test = split_train_test(part, loaded.y, train_fraction, split_seed(seed, client))
        train.setflags(write=False)
        test.setflags(write=False)
        splits.append((train, test))
    return tuple(splits)


def split_seed(seed: int, client_index: int) -> int:
    """Independent, deterministic seed for one client's train/test split."""
    return int(np.random.SeedSequence([seed, client_index]).generate_state(1)[0])


def _as_int(value: object) -> int | None:
    """``value`` as a plain int (so cache keys agree), or None if it is not an integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        return None
    return int(value)


def _check_args(
    num_clients: object, seed: object, train_fraction: object
) -> tuple[int, int, float]:
    n = _as_int(num_clients)
    if n is None or n < 1:
        raise ValueError(f"num_clients must be an integer >= 1; got {num_clients!r}")
    s = _as_int(seed)
    if s is None or s < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    if (
        isinstance(train_fraction, bool)
        or not isinstance(train_fraction, (int, float))
        or not 0.0 < train_fraction < 1.0
    ):
        raise ValueError(f"train_fraction must be in (0, 1); got {train_fraction!r}")
    return n, s, float(train_fraction)


def client_shard(
    dataset: str,
    spec: PartitionSpec,
    num_clients: int,
    client_index: int,
    seed: int,
    train_fraction: float = 0.75,
) -> ClientShard:
    """Load ``dataset``, partition it across ``num_clients`` and return one client's shard."""
    num_clients, seed, train_fraction = _check_args(num_clients, seed, train_fraction)
    index = _as_int(client_index)
    if index is None or not 0 <= index < num_clients:
        raise ValueError(
            f"client_index={client_index!r} is out of range for num_clients={num_clients} "
            f"(valid: 0..{num_clients - 1})"
        )
    loaded = _load(dataset)
    train, test = _client_splits(dataset, spec, num_clients, seed, train_fraction)[index]
    return ClientShard(
        client_index=index,
        train_x=loaded.x[train],
        train_y=loaded.y[train],
        test_x=loaded.x[test],
        test_y=loaded.y[test],
        num_classes=loaded.num_classes,
        input_shape=tuple(loaded.input_shape),
    )


def partition_summary(
    dataset: str,
    spec: PartitionSpec,
    num_clients: int,
    seed: int,
    train_fraction: float = 0.75,
) -> list[dict]:
    """Per client: ``client_index``, ``num_train``, ``num_test``, ``label_counts`` (train)."""
    num_clients, seed, train_fraction = _check_args(num_clients, seed, train_fraction)
    loaded = _load(dataset)
    splits = _client_splits(dataset, spec, num_clients, seed, train_fraction)
    return [
        {
            "client_index": client,
            "num_train": int(train.size),
            "num_test": int(test.size),
            "label_counts": _label_counts(loaded.y[train]),
        }
        for client, (train, test) in enumerate(splits)
    ]


def clear_caches() -> None:
    """Forget cached datasets and partitions (e.g. after replacing a registered loader)."""
    _load.cache_clear()
    _partition.cache_clear()
    _client_splits.cache_clear()
