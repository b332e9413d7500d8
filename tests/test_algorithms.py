"""Server-side math of each method on small hand-computed inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from htfl.algorithms import get_method
from htfl.algorithms.base import Upload
from htfl.algorithms.fedavg import weighted_average
from htfl.algorithms.fedtgp import (
    FedTGPParams,
    adaptive_margin,
    class_gaps,
    cluster_centres,
    margin_loss,
)
from htfl.algorithms.prototypes import prototype_payload, weighted_prototypes


def upload(index: int, protos, counts) -> Upload:
    return Upload(
        index, int(sum(counts)), prototype_payload(np.array(protos, float), np.array(counts, float))
    )


def test_prototype_averaging_is_sample_weighted_per_class() -> None:
    # 3 classes, d=2. Client 0 holds classes 0 and 1; client 1 holds classes 1 and 2.
    a = upload(0, [[1, 1], [2, 0], [0, 0]], [3, 1, 0])
    b = upload(1, [[0, 0], [6, 4], [5, 5]], [0, 3, 2])
    out = weighted_prototypes([a, b], num_classes=3, feature_dim=2)
    np.testing.assert_allclose(out["prototypes"][0], [1, 1])
    np.testing.assert_allclose(out["prototypes"][1], [(2 * 1 + 6 * 3) / 4, (0 + 4 * 3) / 4])
    np.testing.assert_allclose(out["prototypes"][2], [5, 5])
    np.testing.assert_allclose(out["counts"], [3, 4, 2])


def test_a_class_nobody_holds_gets_no_prototype() -> None:
    out = weighted_prototypes([upload(0, [[1, 1], [0, 0]], [2, 0])], 2, 2)
    assert out["counts"][1] == 0
    np.testing.assert_allclose(out["prototypes"][1], [0, 0])


def test_fedtgp_margin_is_min_of_largest_class_gap_and_tau() -> None:
    # Cluster centres: class 0 at (0,0), class 1 at (3,4) (distance 5), class 2 at (0,1).
    a = upload(0, [[0, 0], [3, 4], [0, 2]], [1, 1, 1])
    b = upload(1, [[0, 0], [3, 4], [0, 0]], [1, 1, 1])
    centres = cluster_centres([a, b], 3)
    np.testing.assert_allclose(centres[2], [0, 1])  # unweighted mean over clients
    gaps = class_gaps(centres)
    assert gaps[0] == pytest.approx(1.0)  # nearest to class 2
    assert gaps[2] == pytest.approx(1.0)
    assert gaps[1] == pytest.approx(np.hypot(3, 3))  # (3,4) to (0,1)
    assert adaptive_margin(gaps, tau=100.0) == pytest.approx(np.hypot(3, 3))
    assert adaptive_margin(gaps, tau=2.0) == 2.0


def test_a_lone_class_takes_the_smallest_gap() -> None:
    assert class_gaps({4: np.array([1.0, 0.0])}) == {4: 0.0}


def test_margin_loss_pushes_the_true_class_by_the_margin() -> None:
    protos = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    x = torch.tensor([[1.0, 0.0]])
    y = torch.tensor([0])
    # distances 1 and 9; with margin 2 the logits are -(1+2) and -9
    expected = -torch.log_softmax(torch.tensor([-3.0, -9.0]), 0)[0]
    assert float(margin_loss(x, y, protos, 2.0)) == pytest.approx(float(expected))


def test_fedtgp_global_prototypes_keep_changing_after_round_one() -> None:
    """The known trap: a server whose global knowledge stops moving after round 1."""
    method = get_method("fedtgp")
    server = method.server(FedTGPParams(server_epochs=5), 3, 4, seed=0)
    rng = np.random.default_rng(0)
    seen = []
    for _ in range(3):
        uploads = [upload(i, rng.normal(size=(3, 4)), [2, 3, 1]) for i in range(2)]
        server.aggregate(uploads)
        seen.append(server.global_payload()["prototypes"].copy())
    assert not np.allclose(seen[0], seen[1])
    assert not np.allclose(seen[1], seen[2])
    assert server.margin > 0


def test_fedproto_global_prototypes_follow_the_latest_uploads() -> None:
    server = get_method("fedproto").server(get_method("fedproto").params(), 2, 2, seed=0)
    server.aggregate([upload(0, [[1, 1], [2, 2]], [1, 1])])
    first = server.global_payload()["prototypes"].copy()
    server.aggregate([upload(0, [[3, 3], [2, 2]], [1, 1])])
    assert not np.allclose(first, server.global_payload()["prototypes"])


def test_fedavg_weighted_average_by_samples() -> None:
    a = {"w": np.array([0.0, 2.0], np.float32), "n": np.array(4, np.int64)}
    b = {"w": np.array([4.0, 2.0], np.float32), "n": np.array(8, np.int64)}
    out = weighted_average([a, b], [1, 3])
    np.testing.assert_allclose(out["w"], [3.0, 2.0])
    assert out["w"].dtype == np.float32 and out["n"].dtype == np.int64


def test_declared_prototype_upload_size() -> None:
    method = get_method("fedproto")
    assert method.declared_upload_bytes(None, 10, 512, 0) == 10 * 512 * 4 + 10 * 4
    assert get_method("local").declared_upload_bytes(None, 10, 512, 0) == 0
