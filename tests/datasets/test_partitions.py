"""Partition properties: exdir (new), and the PFLlib properties on a real loader's data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import htfl.datasets.partition as partition_module
from htfl.datasets import PartitionSpec, partition_indices
from htfl.datasets.partition import exdir_class_holders
from htfl.workstation.datasets.catalog import make_loader
from tests.datasets.fixtures import make_har_zip


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return make_loader("digits").load().y


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
