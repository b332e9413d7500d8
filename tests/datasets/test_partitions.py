"""Partition properties: exdir (new), and the PFLlib properties on a real loader's data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import htfl.datasets.partition as partition_module
from htfl.datasets import PartitionSpec, client_shard, partition_indices, split_train_test
from htfl.datasets.partition import exdir_class_holders
from htfl.workstation.datasets.catalog import make_loader
from tests.datasets.fixtures import make_har_zip


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return make_loader("digits").load().y


NUM_CLIENTS = 10


def _classes(parts: list[np.ndarray], labels: np.ndarray) -> list[set[int]]:
    return [set(np.unique(labels[p]).tolist()) for p in parts]


def _exact_cover(parts: list[np.ndarray], n: int) -> None:
    joined = np.concatenate(parts)
    assert joined.size == n and np.unique(joined).size == n


@pytest.mark.parametrize("c,alpha", [(1, 100.0), (2, 0.1), (2, 1.0), (3, 0.1), (3, 100.0)])
def test_exdir_at_most_c_classes_each_and_min_samples(
    labels: np.ndarray, c: int, alpha: float
) -> None:
    spec = PartitionSpec("exdir", classes_per_client=c, alpha=alpha, min_samples=5)
    for seed in range(3):
        parts = partition_indices(labels, 20, spec, seed)
        assert all(1 <= len(s) <= c for s in _classes(parts, labels))
        assert min(p.size for p in parts) >= 5
        _exact_cover(parts, labels.size)


def test_exdir_clients_hold_only_their_drawn_classes(labels: np.ndarray) -> None:
    spec = PartitionSpec("exdir", classes_per_client=2, alpha=100.0, min_samples=1)
    parts = partition_indices(labels, 20, spec, seed=4)
    # Replay the first level with the same generator state: the drawn class sets.
    rng = np.random.default_rng(4)
    holders = exdir_class_holders(10, 20, 2, rng)
    drawn = [{c for c, owners in enumerate(holders) if client in owners} for client in range(20)]
    held = _classes(parts, labels)
    assert all(h <= d for h, d in zip(held, drawn, strict=True))
    # alpha=100 spreads each class evenly over its holders, so nearly every client gets
    # both its classes (one that reached its fair share early gets no more, as in PFLlib).
    assert sum(h == d for h, d in zip(held, drawn, strict=True)) >= 16
    # Every class has at least max(C * N // K // 2, 1) = 2 holders.
    assert min(len(h) for h in holders) >= 2


def test_exdir_is_reproducible_and_seed_dependent(labels: np.ndarray) -> None:
    spec = PartitionSpec("exdir", classes_per_client=3, alpha=0.5)
    a = partition_indices(labels, 10, spec, seed=0)
    b = partition_indices(labels, 10, spec, seed=0)
    c = partition_indices(labels, 10, spec, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_exdir_is_more_skewed_than_pathological_balance(labels: np.ndarray) -> None:
    # Within a client's classes, small alpha gives unequal amounts; large alpha near-equal.
    def imbalance(alpha: float) -> float:
        spec = PartitionSpec("exdir", classes_per_client=2, alpha=alpha, min_samples=1)
        ratios = []
        for seed in range(5):
            for p in partition_indices(labels, 10, spec, seed):
                counts = np.bincount(labels[p], minlength=10)
                held = np.sort(counts[counts > 0])
                ratios.append(held[-1] / held.sum())
        return float(np.mean(ratios))

    assert imbalance(0.05) > imbalance(100.0) + 0.1


def test_exdir_errors(labels: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="num_clients \\* classes_per_client"):
        partition_indices(labels, 3, PartitionSpec("exdir", classes_per_client=2), 0)
    with pytest.raises(ValueError, match="classes_per_client=11"):
        partition_indices(labels, 20, PartitionSpec("exdir", classes_per_client=11), 0)
    small = np.repeat(np.arange(10), 20)
    monkeypatch.setattr(partition_module, "MAX_EXDIR_ASSIGNMENTS", 3)
    # 10 clients drawing 1 class each rarely cover all 10 classes.
    with pytest.raises(ValueError, match="every class 1 holders in 3 draws"):
        partition_indices(small, 10, PartitionSpec("exdir", classes_per_client=1), 0)
    monkeypatch.setattr(partition_module, "MAX_EXDIR_ASSIGNMENTS", 1000)
    monkeypatch.setattr(partition_module, "MAX_DIRICHLET_ATTEMPTS", 3)
    # Every client would need exactly its fair share: hopeless at alpha=0.01.
    spec = PartitionSpec("exdir", classes_per_client=2, alpha=0.01, min_samples=10)
    with pytest.raises(ValueError, match="3 attempts"):
        partition_indices(small, 20, spec, 0)


def test_relevant_fields_per_kind() -> None:
    assert PartitionSpec("natural", alpha=0.3).relevant() == {"kind": "natural"}
    assert PartitionSpec("exdir", alpha=1, classes_per_client=3).relevant() == {
        "kind": "exdir",
        "classes_per_client": 3,
        "alpha": 1.0,
        "min_samples": 10,
    }
    assert PartitionSpec("dirichlet").relevant() == {
        "kind": "dirichlet",
        "alpha": 0.1,
        "min_samples": 10,
    }


# --------------------------------------------------------------------------- on HAR data


@pytest.fixture(scope="module")
def har(tmp_path_factory: pytest.TempPathFactory):
    tmp: Path = tmp_path_factory.mktemp("har")
    fx = make_har_zip(tmp / "har.zip", {"train": [1, 3, 5, 7], "test": [2, 4]}, per_class=6)
    return make_loader("har", source=fx.path, expected_sha256=fx.sha256).load()


def test_natural_on_har_is_one_client_per_subject(har) -> None:
    parts = partition_indices(har.y, 6, PartitionSpec("natural"), seed=3, groups=har.groups)
    assert [sorted(set(har.groups[p].tolist())) for p in parts] == [
        [s] for s in range(1, 8) if s != 6
    ]
    _exact_cover(parts, har.y.size)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_pathological_on_har_exactly_k_classes(har, k: int) -> None:
    spec = PartitionSpec("pathological", classes_per_client=k, min_samples=1)
    parts = partition_indices(har.y, 9, spec, seed=0)
    assert [len(s) for s in _classes(parts, har.y)] == [k] * 9


def test_dirichlet_on_har_reproducible_and_above_minimum(har) -> None:
    spec = PartitionSpec("dirichlet", alpha=0.3, min_samples=15)
    for seed in range(4):
        a = partition_indices(har.y, 8, spec, seed)
        b = partition_indices(har.y, 8, spec, seed)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        assert min(p.size for p in a) >= 15


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
