"""Client shards from the in-memory registry, their summary, and the torch DataLoader wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from htfl.datasets import (
    ClientShard,
    LoadedDataset,
    PartitionSpec,
    UnknownDatasetError,
    client_shard,
    get_loader,
    partition_summary,
    to_loader,
)

NUM_CLIENTS = 10


@pytest.fixture(scope="module")
def digits() -> LoadedDataset:
    return get_loader("digits").load()


# --------------------------------------------------------------------------- shards


def test_client_shards_agree_with_partition(digits: LoadedDataset) -> None:
    spec = PartitionSpec("pathological", classes_per_client=2)
    shards = [client_shard("digits", spec, NUM_CLIENTS, i, seed=0) for i in range(NUM_CLIENTS)]
    assert all(isinstance(s, ClientShard) for s in shards)
    total = sum(s.train_y.size + s.test_y.size for s in shards)
    assert total == digits.y.size
    for i, shard in enumerate(shards):
        assert shard.client_index == i
        assert shard.num_classes == 10
        assert shard.input_shape == (1, 8, 8)
        assert shard.train_x.shape == (shard.train_y.size, 1, 8, 8)
        assert shard.test_x.shape == (shard.test_y.size, 1, 8, 8)
        assert shard.train_x.dtype == np.float32
        assert shard.train_y.dtype == np.int64
        assert len(shard.label_counts()) == 2
        assert sum(shard.label_counts().values()) == shard.train_y.size
        assert set(np.unique(shard.test_y)) <= set(shard.label_counts())
    # Same arguments in the same process give the same shard (cached, deterministic).
    again = client_shard("digits", spec, NUM_CLIENTS, 4, seed=0)
    np.testing.assert_array_equal(again.train_x, shards[4].train_x)
    np.testing.assert_array_equal(again.test_y, shards[4].test_y)


def test_client_shard_arrays_are_private_copies() -> None:
    spec = PartitionSpec("iid", balanced=True)
    shard = client_shard("digits", spec, 4, 0, seed=0)
    original = shard.train_x[0].copy()
    shard.train_x[0] = 123.0
    fresh = client_shard("digits", spec, 4, 0, seed=0)
    np.testing.assert_array_equal(fresh.train_x[0], original)


@pytest.mark.parametrize("client_index", [-1, 10, 11])
def test_client_shard_out_of_range(client_index: int) -> None:
    with pytest.raises(ValueError, match=r"client_index.*num_clients=10"):
        client_shard("digits", PartitionSpec("iid"), NUM_CLIENTS, client_index, seed=0)


def test_client_shard_unknown_dataset() -> None:
    with pytest.raises(UnknownDatasetError, match="digits"):
        client_shard("cifar-1000", PartitionSpec("iid"), NUM_CLIENTS, 0, seed=0)


def test_partition_summary_matches_shards() -> None:
    spec = PartitionSpec("dirichlet", alpha=0.1)
    summary = partition_summary("digits", spec, NUM_CLIENTS, seed=0)
    assert [row["client_index"] for row in summary] == list(range(NUM_CLIENTS))
    for row in summary:
        shard = client_shard("digits", spec, NUM_CLIENTS, row["client_index"], seed=0)
        assert row["num_train"] == shard.train_y.size
        assert row["num_test"] == shard.test_y.size
        assert row["label_counts"] == shard.label_counts()
    assert sum(r["num_train"] + r["num_test"] for r in summary) == 1797


# --------------------------------------------------------------------------- torch


def test_to_loader_batches_and_deterministic_shuffle() -> None:
    x = np.arange(40, dtype=np.float32).reshape(10, 1, 2, 2)
    y = np.arange(10, dtype=np.int64)

    def order(seed: int) -> list[int]:
        loader = to_loader(x, y, batch_size=4, shuffle=True, seed=seed)
        return torch.cat([yb for _, yb in loader]).tolist()

    torch.manual_seed(123)  # global RNG must not matter
    first = order(0)
    torch.manual_seed(456)
    assert order(0) == first
    assert sorted(first) == list(range(10))
    assert first != list(range(10))
    assert order(1) != first

    loader = to_loader(x, y, batch_size=4, shuffle=False, seed=0)
    batches = list(loader)
    assert [len(yb) for _, yb in batches] == [4, 4, 2]
    xb, yb = batches[0]
    assert xb.dtype == torch.float32
    assert yb.dtype == torch.int64
    assert xb.shape == (4, 1, 2, 2)
    assert yb.tolist() == [0, 1, 2, 3]


def test_to_loader_accepts_read_only_arrays() -> None:
    x = np.ones((3, 2), dtype=np.float32)
    x.setflags(write=False)
    y = np.zeros(3, dtype=np.int64)
    (xb, yb), *_ = list(to_loader(x, y, batch_size=8, shuffle=False, seed=0))
    assert xb.shape == (3, 2)
    with pytest.raises(ValueError, match="batch_size"):
        to_loader(x, y, batch_size=0, shuffle=False, seed=0)
