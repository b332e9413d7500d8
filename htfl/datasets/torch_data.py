"""Wrap numpy arrays from a :class:`~htfl.datasets.shard.ClientShard` in a torch DataLoader."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["to_loader"]


def _tensor(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    array = np.asarray(array)
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, order="C", copy=True)  # torch.from_numpy needs writable C data
    return torch.from_numpy(array).to(dtype)


def to_loader(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A single-process DataLoader over ``(x float32, y int64)`` pairs.

    Shuffling is driven by a ``torch.Generator`` seeded with ``seed``: the same seed gives
    the same batch order (epoch by epoch) regardless of the global torch RNG state.
    ``drop_last`` leaves out the last partial batch (HtFLlib's loaders do).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    dataset = TensorDataset(_tensor(x, torch.float32), _tensor(y, torch.int64))
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last
    )
