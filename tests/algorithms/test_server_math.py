"""Each method's server-side math on small inputs whose answer is computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from htfl.algorithms import fedgen, fedkd, fedktl, fedl2g, get_method
from htfl.algorithms.aggregate import mean_over_holders, weighted_average
from htfl.algorithms.base import Upload, class_means
from htfl.algorithms.distill import kd_loss
from htfl.algorithms.fd import global_logits, teacher_logits
from htfl.algorithms.fedgh import train_head
from htfl.algorithms.fedtgp import (
    FedTGPParams,
    adaptive_margin,
    class_gaps,
    cluster_centres,
    margin_loss,
)
from htfl.algorithms.prototypes import (
    prototype_pairs,
    prototype_payload,
    weighted_prototypes,
)
from htfl.workstation.server.results import ClientRoundRow
from htfl.workstation.server.round_loop import mark_set_aside


def up(index: int, payload: dict, num_samples: int = 1, label_counts=None) -> Upload:
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in payload.items()}
    return Upload(index, num_samples, arrays, label_counts or {})


# --- shared helpers -------------------------------------------------------------------------
def test_mean_over_holders_counts_each_holder_once() -> None:
    # class 0: clients a and b -> (1+3)/2; class 1: only b -> 5; class 2: nobody -> 0
    a = np.array([[1.0, 1.0], [9.0, 9.0], [7.0, 7.0]])
    b = np.array([[3.0, 3.0], [5.0, 5.0], [7.0, 7.0]])
    means, holders = mean_over_holders([a, b], [np.array([4, 0, 0]), np.array([1, 2, 0])], 3)
    np.testing.assert_allclose(means, [[2, 2], [5, 5], [0, 0]])
    np.testing.assert_allclose(holders, [2, 1, 0])


def test_class_means_and_counts() -> None:
    values = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    means, counts = class_means(values, torch.tensor([0, 0, 2]), 3)
    np.testing.assert_allclose(means, [[2, 1], [0, 0], [5, 5]])
    np.testing.assert_allclose(counts, [2, 0, 1])


def test_kd_loss_is_the_kl_divergence_times_t_squared() -> None:
    student, teacher = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])
    # teacher probabilities (3/4, 1/4), student (1/2, 1/2)
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert float(kd_loss(student, teacher)) == pytest.approx(kl)
    assert float(kd_loss(student * 2, teacher * 2, temperature=2.0)) == pytest.approx(4 * kl)


# --- FD -------------------------------------------------------------------------------------
def test_fd_global_logits_are_the_mean_over_holders() -> None:
    a = up(0, {"logits": [[2, 0], [0, 0]], "counts": [3, 0]})
    b = up(1, {"logits": [[4, 2], [1, 5]], "counts": [1, 6]})
    out = global_logits([a, b], 2)
    np.testing.assert_allclose(out["logits"], [[3, 1], [1, 5]])  # unweighted by sample count
    np.testing.assert_allclose(out["holders"], [2, 1])


def test_fd_teacher_excludes_the_clients_own_logits() -> None:
    # 3 holders of class 0 with mean (2, 2); this client sent (5, 5): others' mean (0.5, 0.5).
    # class 1 held only by this client: no teacher. class 2 not held by it: the global mean.
    global_mean = np.array([[2.0, 2.0], [4.0, 4.0], [1.0, 0.0]])
    holders = np.array([3.0, 1.0, 2.0])
    own = np.array([[5.0, 5.0], [4.0, 4.0], [0.0, 0.0]])
    teachers, has = teacher_logits(global_mean, holders, own, np.array([7.0, 2.0, 0.0]))
    np.testing.assert_allclose(teachers[0], [0.5, 0.5])
    np.testing.assert_allclose(teachers[2], [1.0, 0.0])
    np.testing.assert_allclose(has, [1, 0, 1])


# --- FML / FedMRL / LG-FedAvg / FedGen heads: sample-weighted averages ------------------------
@pytest.mark.parametrize("name", ["fml", "fedmrl"])
def test_shared_model_servers_average_by_samples(name: str) -> None:
    server = get_method(name).server(get_method(name).params(), 2, 4, seed=0)
    server.aggregate([up(0, {"w": [0.0, 4.0]}, 1), up(1, {"w": [8.0, 0.0]}, 3)])
    np.testing.assert_allclose(server.global_payload()["w"], [6.0, 1.0])


@pytest.mark.parametrize("name", ["lg_fedavg", "fedgen"])
def test_head_servers_average_heads_by_samples(name: str) -> None:
    method = get_method(name)
    server = method.server(method.params(), 2, 1, seed=0)
    initial = server.global_payload()["head.weight"].copy()
    a = up(0, {"head.weight": [[1.0], [0.0]], "head.bias": [0.0, 2.0]}, 3, {0: 3})
    b = up(1, {"head.weight": [[5.0], [4.0]], "head.bias": [4.0, 2.0]}, 1, {1: 1})
    if name == "fedgen":
        a.payload["label_counts"] = np.array([3, 0], np.float32)
    server.aggregate([a, b])
    np.testing.assert_allclose(server.global_payload()["head.weight"], [[2.0], [1.0]])
    np.testing.assert_allclose(server.global_payload()["head.bias"], [1.0, 2.0])
    assert initial.shape == (2, 1)


# --- FedGen -----------------------------------------------------------------------------------
def test_fedgen_label_weights_and_prior() -> None:
    counts = np.array([[3, 0, 1], [1, 2, 0]])
    np.testing.assert_allclose(fedgen.label_weights(counts), [[0.75, 0, 1], [0.25, 1, 0]])
    np.testing.assert_allclose(fedgen.label_distribution(counts), [4 / 7, 2 / 7, 1 / 7])
    np.testing.assert_allclose(fedgen.label_weights(np.zeros((2, 1))), [[0], [0]])


def test_fedgen_ensemble_loss_weights_each_heads_cross_entropy_by_label() -> None:
    feature = torch.tensor([[1.0]])
    label = torch.tensor([0])
    heads = [  # head 0 scores classes (1, 0) -> CE = log(1 + e^-1); head 1 scores (0, 0) -> log 2
        (torch.tensor([[1.0], [0.0]]), torch.zeros(2)),
        (torch.tensor([[0.0], [0.0]]), torch.zeros(2)),
    ]
    alpha = torch.tensor([[0.25, 0.5], [0.75, 0.5]])
    expected = 0.25 * math.log(1 + math.exp(-1)) + 0.75 * math.log(2)
    assert float(fedgen.ensemble_loss(feature, label, heads, alpha)) == pytest.approx(expected)


def test_fedgen_counts_come_once_then_from_the_cache_or_setup() -> None:
    server = get_method("fedgen").server(get_method("fedgen").params(server_epochs=1), 2, 2, 0)
    head = {"head.weight": np.zeros((2, 2)), "head.bias": np.zeros(2)}
    first = up(0, {**head, "label_counts": [5, 0]}, 5, {0: 5})
    server.aggregate([first])
    late = up(1, head, 2, {1: 2})  # its first upload never arrived: setup's counts
    server.aggregate([up(0, head, 5, {0: 5}), late])
    np.testing.assert_allclose(server.label_counts[0], [5, 0])
    np.testing.assert_allclose(server.label_counts[1], [0, 2])
    np.testing.assert_allclose(server.global_payload()["label_prior"], [5 / 7, 2 / 7], rtol=1e-6)


# --- FedKD ------------------------------------------------------------------------------------
def test_fedkd_energy_rises_linearly_then_holds() -> None:
    assert fedkd.energy_at(1, 0.95, 0.98, 3) == pytest.approx(0.95)
    assert fedkd.energy_at(2, 0.95, 0.98, 3) == pytest.approx(0.96)
    assert fedkd.energy_at(4, 0.95, 0.98, 3) == pytest.approx(0.98)
    assert fedkd.energy_at(40, 0.95, 0.98, 3) == pytest.approx(0.98)


def test_fedkd_rank_keeps_the_fewest_values_reaching_the_energy() -> None:
    s = np.array([3.0, 2.0, 1.0])  # squared shares 9/14 = 0.643, 13/14 = 0.929, 1
    assert fedkd.energy_rank(s, 0.6) == 1
    assert fedkd.energy_rank(s, 0.9) == 2
    assert fedkd.energy_rank(s, 0.95) == 3  # HtFLlib would keep none here
    assert fedkd.energy_rank(np.zeros(3), 0.95) == 1


def test_fedkd_compress_truncates_and_reconstructs() -> None:
    # a 6x5 matrix with singular values 10, 1, 0.1: energy 0.95 keeps one, 0.999 two
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(6, 3)))
    v, _ = np.linalg.qr(rng.normal(size=(5, 3)))
    matrix = (u * [10.0, 1.0, 0.1]) @ v.T
    one = fedkd.compress({"w": matrix, "b": np.ones(5)}, 0.95)
    assert one["w:u"].shape == (6, 1) and one["w:v"].shape == (1, 5)
    np.testing.assert_allclose(one["b"], np.ones(5))
    back = fedkd.decompress(one)["w"]
    np.testing.assert_allclose(back, 10.0 * np.outer(u[:, 0], v[:, 0]), atol=1e-5)
    two = fedkd.decompress(fedkd.compress({"w": matrix}, 0.999))["w"]
    np.testing.assert_allclose(two, matrix - 0.1 * np.outer(u[:, 2], v[:, 2]), atol=1e-5)


def test_fedkd_sends_dense_when_factors_are_larger_and_flattens_kernels() -> None:
    kernel = np.random.default_rng(0).normal(size=(4, 2, 3, 3))  # 4 x 18, full rank
    out = fedkd.compress({"w": np.eye(3), "k": kernel}, 0.9999)
    np.testing.assert_allclose(out["w"], np.eye(3))  # rank 3: 3 * (3 + 3 + 1) > 9
    np.testing.assert_allclose(out["k"], kernel.reshape(4, 18), rtol=1e-6)  # 4 * 23 > 72
    low = fedkd.compress({"k": np.zeros((4, 2, 3, 3))}, 0.95)  # rank 1: 23 numbers < 72
    assert low["k:u"].shape == (4, 1) and low["k:v"].shape == (1, 18)


def test_fedkd_server_averages_updates_by_samples_and_versions_them() -> None:
    server = get_method("fedkd").server(get_method("fedkd").params(ramp_rounds=2), 2, 2, 0)
    a = up(0, {"w": [[2.0, 0.0], [0.0, 0.0]], "b": [1.0], "base_version": 0}, 1)
    b = up(1, {"w": [[6.0, 0.0], [0.0, 0.0]], "b": [5.0], "base_version": 0}, 3)
    server.aggregate([a, b])
    out = server.global_payload()
    update = fedkd.decompress(out)
    np.testing.assert_allclose(update["w"], [[5.0, 0.0], [0.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(update["b"], [4.0])
    assert int(out["version"]) == 1
    assert float(out["energy"]) == pytest.approx(0.965)  # round 2 of a 2-round ramp
    stale = up(0, {"w": [[1.0, 0.0], [0.0, 0.0]], "b": [1.0], "base_version": 0}, 1)
    server.aggregate([stale])  # based on version 0: ignored
    assert int(server.global_payload()["version"]) == 1


# --- FedGH ------------------------------------------------------------------------------------
def test_fedgh_one_sgd_step_on_one_prototype() -> None:
    # zero head, prototype (1, 0) of class 0: softmax (1/2, 1/2), so the gradient of the weight
    # is (p - onehot) x prototype = [[-1/2, 0], [1/2, 0]] and of the bias (-1/2, 1/2).
    head = nn.Linear(2, 2)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    protos, labels = np.array([[1.0, 0.0]], np.float32), np.array([0])
    train_head(head, protos, labels, 1, 1.0, 10, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(head.weight.detach(), [[0.5, 0.0], [-0.5, 0.0]])
    np.testing.assert_allclose(head.bias.detach(), [0.5, -0.5])


def test_prototype_pairs_take_every_held_class_of_every_client() -> None:
    a = up(0, {"prototypes": [[1, 1], [2, 2]], "counts": [3, 0]})
    b = up(1, {"prototypes": [[3, 3], [4, 4]], "counts": [1, 1]})
    protos, labels = prototype_pairs([a, b])
    np.testing.assert_allclose(protos, [[1, 1], [3, 3], [4, 4]])
    np.testing.assert_array_equal(labels, [0, 0, 1])


# --- FedL2G -----------------------------------------------------------------------------------
def test_fedl2g_step_uses_the_mean_gradient_of_the_clients_that_sent_one() -> None:
    guides = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], np.float32)
    a = up(0, {"grads": [[2.0, 0.0], [0.0, 0.0], [0.0, 0.0]], "present": [1, 0, 0]})
    b = up(1, {"grads": [[4.0, 2.0], [0.0, 6.0], [0.0, 0.0]], "present": [1, 1, 0]})
    # class 0: (3, 1); class 1: (0, 6); class 2: untouched. lr 0.5
    out = fedl2g.guide_step(guides, [a, b], learning_rate=0.5, max_norm=100.0)
    np.testing.assert_allclose(out, [[-0.5, 0.5], [2.0, -1.0], [3.0, 3.0]])


def test_fedl2g_clips_the_whole_gradient_to_the_norm() -> None:
    guides = np.zeros((1, 2), np.float32)
    a = up(0, {"grads": [[30.0, 40.0]], "present": [1]})  # norm 50, clipped to 5
    out = fedl2g.guide_step(guides, [a], learning_rate=1.0, max_norm=5.0)
    np.testing.assert_allclose(out, [[-3.0, -4.0]])


# --- FedKTL -----------------------------------------------------------------------------------
def test_simplex_etf_has_unit_columns_at_equal_obtuse_angles() -> None:
    etf = fedktl.simplex_etf(4, 6, seed=0)
    gram = etf.T @ etf
    np.testing.assert_allclose(np.diag(gram), np.ones(4), atol=1e-6)
    off = gram[~np.eye(4, dtype=bool)]
    np.testing.assert_allclose(off, np.full(12, -1 / 3), atol=1e-6)


def test_mmd_of_two_points_by_hand() -> None:
    # one sample each at distance 1: MMD = 2 * sum_a (1 - exp(-1 / (2 a)))
    x, y = torch.tensor([[0.0]]), torch.tensor([[1.0]])
    expected = sum(2 * (1 - math.exp(-0.5 / a)) for a in (10.0, 15.0, 20.0, 50.0))
    assert float(fedktl.mmd_rbf(x, y)) == pytest.approx(expected, rel=1e-6)
    assert float(fedktl.mmd_rbf(x, x)) == pytest.approx(0.0, abs=1e-7)


def test_arcface_adds_the_margin_to_the_true_class_angle_only() -> None:
    cosine = torch.tensor([[0.0, 0.5]])  # angles pi/2 and pi/3
    out = fedktl.arcface_logits(cosine, torch.tensor([1]), margin=0.1, scale=2.0)
    np.testing.assert_allclose(out, [[0.0, 2.0 * math.cos(math.pi / 3 + 0.1)]], atol=1e-5)


def test_ktl_centroids_are_class_means_and_unseen_classes_keep_theirs() -> None:
    latents = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    previous = torch.full((3, 2), 9.0)
    out = fedktl.class_centroids(latents, torch.tensor([0, 0, 2]), 3, previous)
    np.testing.assert_allclose(out, [[2, 1], [9, 9], [5, 5]])


def test_weighted_average_keeps_integer_dtypes() -> None:
    out = weighted_average([{"n": np.array(4, np.int64)}, {"n": np.array(8, np.int64)}], [1, 1])
    assert out["n"].dtype == np.int64 and int(out["n"]) == 6


@pytest.mark.parametrize("name", ["fedproto", "fd", "lg_fedavg"])
def test_a_non_finite_upload_is_set_aside(name: str) -> None:
    method = get_method(name)
    server = method.server(method.params(), 2, 2, seed=0)
    keys = {"fedproto": ("prototypes", "counts"), "fd": ("logits", "counts")}
    first, second = keys.get(name, ("head.weight", "head.bias"))
    good = up(0, {first: [[1.0, 2.0], [3.0, 4.0]], second: [1.0, 1.0]}, 1)
    bad = up(3, {first: [[np.nan, 2.0], [3.0, 4.0]], second: [1.0, 1.0]}, 5)
    server.aggregate([good, bad])
    assert [index for index, _ in server.rejected] == [3]
    np.testing.assert_allclose(server.global_payload()[first], [[1.0, 2.0], [3.0, 4.0]])


def test_a_set_aside_upload_is_marked_in_its_row() -> None:
    rows = [
        ClientRoundRow(1, node, f"d{node}", "jetson-nano", "cnn4", index, status)
        for node, index, status in ((10, 0, "ok"), (11, 3, "ok"), (12, 4, "late"))
    ]
    mark_set_aside(rows, [(3, "non-finite arrays: ['prototypes']"), (4, "late anyway")])
    assert [(r.status, r.error) for r in rows] == [
        ("ok", ""),
        ("set_aside", "non-finite arrays: ['prototypes']"),
        ("late", ""),
    ]


# --- prototype averaging, FedTGP's margin, FedProto, FedAvg ---------------------------------
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
