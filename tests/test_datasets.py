"""Tests for htfl.datasets: loaders, registry, partitions, shards, torch loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import htfl.datasets.partition as partition_module
from htfl.datasets import (
    ClientShard,
    LoadedDataset,
    PartitionSpec,
    UnknownDatasetError,
    client_shard,
    get_loader,
    known_datasets,
    partition_indices,
    partition_summary,
    register_loader,
    split_train_test,
    to_loader,
)

NUM_CLIENTS = 10


@pytest.fixture(scope="module")
def digits() -> LoadedDataset:
    return get_loader("digits").load()


@pytest.fixture(scope="module")
def labels(digits: LoadedDataset) -> np.ndarray:
    return digits.y


def _assert_disjoint(parts: list[np.ndarray]) -> np.ndarray:
    joined = np.concatenate(parts)
    assert np.unique(joined).size == joined.size, "an index was given to two clients"
    return joined


def _assert_exact_cover(parts: list[np.ndarray], n: int) -> None:
    joined = _assert_disjoint(parts)
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))


def _mean_label_entropy(parts: list[np.ndarray], labels: np.ndarray) -> float:
    entropies = []
    for part in parts:
        p = np.bincount(labels[part]) / part.size
        p = p[p > 0]
        entropies.append(float(-(p * np.log(p)).sum()))
    return float(np.mean(entropies))


# --------------------------------------------------------------------------- loaders


def test_digits_loader_shapes_and_dtypes(digits: LoadedDataset) -> None:
    assert digits.name == "digits"
    assert digits.x.dtype == np.float32
    assert digits.y.dtype == np.int64
    assert digits.x.shape == (1797, 1, 8, 8)
    assert digits.y.shape == (1797,)
    assert digits.input_shape == (1, 8, 8)
    assert digits.num_classes == 10
    assert digits.groups is None
    assert float(digits.x.min()) == 0.0
    assert float(digits.x.max()) == 1.0
    np.testing.assert_array_equal(np.unique(digits.y), np.arange(10))


def test_digits_values_are_sklearn_images_over_16(digits: LoadedDataset) -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    np.testing.assert_allclose(digits.x[:, 0], bunch.images / 16.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(digits.y, bunch.target)


def test_registry_lists_digits_and_unknown_name_error_lists_known() -> None:
    assert "digits" in known_datasets()
    assert known_datasets() == sorted(known_datasets())
    with pytest.raises(UnknownDatasetError, match="digits") as info:
        get_loader("no-such-dataset")
    assert isinstance(info.value, ValueError)
    assert "no-such-dataset" in str(info.value)


def test_register_loader_rejects_duplicates_and_non_loaders() -> None:
    class Again:
        name = "digits"

        def load(self) -> LoadedDataset:  # pragma: no cover - never called
            raise AssertionError

    with pytest.raises(ValueError, match="already registered"):
        register_loader(Again())
    with pytest.raises(TypeError):
        register_loader(object())  # type: ignore[arg-type]


def test_loaded_dataset_validates_fields() -> None:
    x = np.zeros((4, 3), dtype=np.float32)
    y = np.array([0, 1, 0, 1], dtype=np.int64)
    LoadedDataset("ok", x, y, 2, (3,), None)
    with pytest.raises(ValueError, match="float32"):
        LoadedDataset("bad", x.astype(np.float64), y, 2, (3,), None)
    with pytest.raises(ValueError, match="input_shape"):
        LoadedDataset("bad", x, y, 2, (4,), None)
    with pytest.raises(ValueError, match="labels"):
        LoadedDataset("bad", x, y, 1, (3,), None)
    with pytest.raises(ValueError, match="groups"):
        LoadedDataset("bad", x, y, 2, (3,), np.zeros(3))


# --------------------------------------------------------------------------- PartitionSpec


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "random"}, "kind"),
        ({"kind": "dirichlet", "alpha": 0.0}, "alpha"),
        ({"kind": "dirichlet", "alpha": -1.0}, "alpha"),
        ({"kind": "dirichlet", "alpha": float("nan")}, "alpha"),
        ({"kind": "pathological", "classes_per_client": 0}, "classes_per_client"),
        ({"kind": "pathological", "classes_per_client": 1.5}, "classes_per_client"),
        ({"kind": "iid", "min_samples": 0}, "min_samples"),
        ({"kind": "iid", "balanced": "yes"}, "balanced"),
    ],
)
def test_bad_partition_spec_raises(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PartitionSpec(**kwargs)


def test_partition_spec_is_hashable_and_valid_by_default() -> None:
    spec = PartitionSpec("dirichlet", alpha=0.5)
    spec.validate()
    assert hash(spec) == hash(PartitionSpec("dirichlet", alpha=0.5))


def test_bad_num_clients_raises(labels: np.ndarray) -> None:
    for bad in (0, -3, 2.0):
        with pytest.raises(ValueError, match="num_clients"):
            partition_indices(labels, bad, PartitionSpec("iid"), seed=0)  # type: ignore[arg-type]


def test_too_many_clients_for_min_samples_raises(labels: np.ndarray) -> None:
    with pytest.raises(ValueError, match="min_samples"):
        partition_indices(labels, 200, PartitionSpec("iid", min_samples=10), seed=0)


# --------------------------------------------------------------------------- iid


def test_iid_balanced_sizes_within_one_and_exact_cover(labels: np.ndarray) -> None:
    for num_clients in (3, 7, 10):
        parts = partition_indices(labels, num_clients, PartitionSpec("iid", balanced=True), 0)
        sizes = [p.size for p in parts]
        assert len(parts) == num_clients
        assert max(sizes) - min(sizes) <= 1
        _assert_exact_cover(parts, labels.size)


def test_iid_unbalanced_random_sizes_respect_min_samples(labels: np.ndarray) -> None:
    spec = PartitionSpec("iid", min_samples=25)
    parts = partition_indices(labels, NUM_CLIENTS, spec, seed=0)
    sizes = [p.size for p in parts]
    _assert_exact_cover(parts, labels.size)
    assert min(sizes) >= 25
    assert max(sizes) - min(sizes) > 1  # genuinely unbalanced
    # iid: each client sees (nearly) every class.
    assert all(np.unique(labels[p]).size >= 9 for p in parts)


def test_iid_is_shuffled_not_contiguous(labels: np.ndarray) -> None:
    parts = partition_indices(labels, 2, PartitionSpec("iid", balanced=True), seed=0)
    assert not np.array_equal(parts[0], np.arange(parts[0].size))


# --------------------------------------------------------------------------- pathological


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("balanced", [False, True])
def test_pathological_exactly_k_classes_each(labels: np.ndarray, k: int, balanced: bool) -> None:
    spec = PartitionSpec("pathological", classes_per_client=k, balanced=balanced)
    parts = partition_indices(labels, NUM_CLIENTS, spec, seed=1)
    assert [np.unique(labels[p]).size for p in parts] == [k] * NUM_CLIENTS
    assert all(p.size >= spec.min_samples for p in parts)
    # num_clients * k >= num_classes: every class is held, so every index is used once.
    _assert_exact_cover(parts, labels.size)


def test_pathological_unbalanced_tiny_classes_keep_k_classes() -> None:
    # Each class has exactly as many samples as holders: every holder must still get one.
    labels = np.repeat(np.arange(5), 4)
    spec = PartitionSpec("pathological", classes_per_client=2, min_samples=1)
    for seed in range(20):
        parts = partition_indices(labels, 10, spec, seed)
        assert [np.unique(labels[p]).size for p in parts] == [2] * 10
        _assert_exact_cover(parts, labels.size)


def test_pathological_class_smaller_than_holders_raises() -> None:
    labels = np.repeat(np.arange(5), 3)
    spec = PartitionSpec("pathological", classes_per_client=2, min_samples=1)
    with pytest.raises(ValueError, match="samples but 4 clients must hold it"):
        partition_indices(labels, 10, spec, seed=0)


def test_pathological_balanced_splits_each_class_evenly(labels: np.ndarray) -> None:
    spec = PartitionSpec("pathological", classes_per_client=2, balanced=True)
    parts = partition_indices(labels, NUM_CLIENTS, spec, seed=0)
    for c in range(10):
        shares = [int(np.sum(labels[p] == c)) for p in parts if np.any(labels[p] == c)]
        assert max(shares) - min(shares) <= 1


def test_pathological_fewer_slots_than_classes_is_disjoint(labels: np.ndarray) -> None:
    spec = PartitionSpec("pathological", classes_per_client=2)
    parts = partition_indices(labels, 3, spec, seed=0)  # 6 slots < 10 classes
    joined = _assert_disjoint(parts)
    assert [np.unique(labels[p]).size for p in parts] == [2, 2, 2]
    held = np.unique(labels[joined])
    assert held.size == 6
    # Every sample of a held class is used.
    assert joined.size == int(np.isin(labels, held).sum())


def test_pathological_k_larger_than_classes_raises(labels: np.ndarray) -> None:
    with pytest.raises(ValueError, match="classes_per_client"):
        partition_indices(labels, 5, PartitionSpec("pathological", classes_per_client=11), 0)


def test_pathological_seed_changes_class_assignment(labels: np.ndarray) -> None:
    spec = PartitionSpec("pathological", classes_per_client=2)

    def class_sets(seed: int) -> list[tuple[int, ...]]:
        parts = partition_indices(labels, NUM_CLIENTS, spec, seed)
        return [tuple(np.unique(labels[p]).tolist()) for p in parts]

    assert class_sets(0) == class_sets(0)
    assert class_sets(0) != class_sets(1)


# --------------------------------------------------------------------------- dirichlet


def test_dirichlet_reproducible_and_seed_dependent(labels: np.ndarray) -> None:
    spec = PartitionSpec("dirichlet", alpha=0.1)
    a = partition_indices(labels, NUM_CLIENTS, spec, seed=0)
    b = partition_indices(labels, NUM_CLIENTS, spec, seed=0)
    c = partition_indices(labels, NUM_CLIENTS, spec, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("alpha", [0.05, 0.1, 1.0, 100.0])
def test_dirichlet_min_samples_and_exact_cover(labels: np.ndarray, alpha: float) -> None:
    spec = PartitionSpec("dirichlet", alpha=alpha, min_samples=20)
    for seed in range(3):
        parts = partition_indices(labels, NUM_CLIENTS, spec, seed)
        assert min(p.size for p in parts) >= 20
        _assert_exact_cover(parts, labels.size)


def test_dirichlet_smaller_alpha_is_more_skewed(labels: np.ndarray) -> None:
    def mean_entropy(alpha: float) -> float:
        spec = PartitionSpec("dirichlet", alpha=alpha)
        return float(
            np.mean(
                [
                    _mean_label_entropy(partition_indices(labels, NUM_CLIENTS, spec, s), labels)
                    for s in range(3)
                ]
            )
        )

    low, mid, high = mean_entropy(0.05), mean_entropy(1.0), mean_entropy(100.0)
    assert low < mid < high
    assert high > 0.95 * np.log(10)  # alpha=100 is close to uniform over 10 classes
    assert low < 0.5 * np.log(10)


def test_dirichlet_caps_clients_at_fair_share_plus_one_class(labels: np.ndarray) -> None:
    # PFLlib/NIID-Bench rule: a client already holding N / num_clients samples gets no
    # more, so no client can exceed that share by more than one class's worth.
    bound = labels.size / NUM_CLIENTS + np.bincount(labels).max()
    spec = PartitionSpec("dirichlet", alpha=0.05)
    for seed in range(10):
        parts = partition_indices(labels, NUM_CLIENTS, spec, seed)
        assert max(p.size for p in parts) <= bound


def test_dirichlet_gives_up_with_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partition_module, "MAX_DIRICHLET_ATTEMPTS", 5)
    labels = np.repeat(np.arange(10), 20)
    # Every client would need exactly N / num_clients samples: hopeless at alpha=0.01.
    spec = PartitionSpec("dirichlet", alpha=0.01, min_samples=20)
    with pytest.raises(ValueError, match=r"5 attempts"):
        partition_indices(labels, 10, spec, seed=0)


# --------------------------------------------------------------------------- natural


def test_natural_one_client_per_group() -> None:
    rng = np.random.default_rng(0)
    groups = rng.choice(np.array([30, 10, 20, 40]), size=200)
    labels = rng.integers(0, 5, size=200)
    parts = partition_indices(labels, 4, PartitionSpec("natural"), seed=7, groups=groups)
    _assert_exact_cover(parts, 200)
    for client, key in enumerate([10, 20, 30, 40]):  # sorted group order
        np.testing.assert_array_equal(parts[client], np.flatnonzero(groups == key))
    # Seed does not matter: the partition is the data's own.
    again = partition_indices(labels, 4, PartitionSpec("natural"), seed=99, groups=groups)
    assert all(np.array_equal(x, y) for x, y in zip(parts, again, strict=True))


def test_natural_requires_groups_and_matching_client_count(labels: np.ndarray) -> None:
    with pytest.raises(ValueError, match="groups"):
        partition_indices(labels, 4, PartitionSpec("natural"), seed=0)
    groups = np.arange(labels.size) % 4
    with pytest.raises(ValueError, match="4 groups"):
        partition_indices(labels, 5, PartitionSpec("natural"), seed=0, groups=groups)
    with pytest.raises(ValueError, match="groups"):
        partition_indices(labels, 4, PartitionSpec("natural"), seed=0, groups=groups[:-1])


def test_natural_on_digits_client_shard_raises() -> None:
    with pytest.raises(ValueError, match="groups"):
        client_shard("digits", PartitionSpec("natural"), 4, 0, seed=0)


# --------------------------------------------------------------------------- train/test


def test_split_train_test_disjoint_deterministic_stratified(labels: np.ndarray) -> None:
    spec = PartitionSpec("dirichlet", alpha=0.5)
    part = partition_indices(labels, NUM_CLIENTS, spec, seed=0)[3]
    train, test = split_train_test(part, labels, 0.75, seed=5)
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), part)
    assert abs(train.size / part.size - 0.75) < 0.05
    for c, n in zip(*np.unique(labels[part], return_counts=True), strict=True):
        if n >= 2:  # stratified: both sides see every class with >= 2 samples
            assert np.any(labels[train] == c)
            assert np.any(labels[test] == c)
    train2, test2 = split_train_test(part, labels, 0.75, seed=5)
    np.testing.assert_array_equal(train, train2)
    np.testing.assert_array_equal(test, test2)
    train3, _ = split_train_test(part, labels, 0.75, seed=6)
    assert not np.array_equal(train, train3)


def test_split_train_test_singletons_and_bad_fraction() -> None:
    labels = np.array([0, 0, 0, 0, 1, 2, 3, 4])
    train, test = split_train_test(np.arange(8), labels, 0.75, seed=0)
    assert train.size + test.size == 8
    assert np.intersect1d(train, test).size == 0
    assert np.sum(labels[train] == 0) == 3
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="train_fraction"):
            split_train_test(np.arange(8), labels, bad, seed=0)


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
