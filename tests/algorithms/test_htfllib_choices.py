"""The points where htfl and HtFLlib differ, each pinned: htfl's default and HtFLlib's choice.

The HtFLlib side of each test is written from HtFLlib's code as its docstring quotes it
(github.com/TsingZ0/HtFLlib, ``system/flcore``), not from the module under test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from htfl.algorithms import fedgen, get_method
from htfl.algorithms.base import ClientSide, TrainSettings, Upload
from htfl.algorithms.fd import global_logits
from htfl.algorithms.fedproto import mse_over_batch
from htfl.algorithms.fedtgp import FedTGPParams, FedTGPServer
from htfl.algorithms.prototypes import client_mean_prototypes, prototype_payload
from htfl.datasets import ClientShard
from htfl.models import build_model
from tests.algorithms.conftest import make_clients


def _shard(n_train: int, n_test: int = 8, classes: int = 3) -> ClientShard:
    rng = np.random.default_rng(0)
    return ClientShard(
        client_index=0,
        train_x=rng.normal(size=(n_train, 1, 8, 8)).astype(np.float32),
        train_y=(np.arange(n_train) % classes).astype(np.int64),
        test_x=rng.normal(size=(n_test, 1, 8, 8)).astype(np.float32),
        test_y=(np.arange(n_test) % classes).astype(np.int64),
        num_classes=classes,
        input_shape=(1, 8, 8),
    )


def _client(name: str, shard: ClientShard, settings: TrainSettings, **params) -> ClientSide:
    method = get_method(name)
    torch.manual_seed(0)
    model = build_model("cnn4", shard.input_shape, shard.num_classes, 16)
    return method.client(model, shard, settings, method.params(**params), 0)


# --- the training loop ------------------------------------------------------------------------
def test_htfllib_loader_keeps_the_order_and_drops_the_last_partial_batch() -> None:
    """HtFLlib clientbase.load_train_data: DataLoader(..., drop_last=True, shuffle=False)."""
    shard = _shard(39)
    client = _client("local", shard, TrainSettings(shuffle=False, drop_last=True))
    batches = list(client._train_loader)
    assert [len(y) for _, y in batches] == [10, 10, 10]  # 39 samples train on 30
    seen = torch.cat([y for _, y in batches]).numpy()
    np.testing.assert_array_equal(seen, shard.train_y[:30])  # in the file's order
    default = _client("local", shard, TrainSettings())
    sizes = [len(y) for _, y in default._train_loader]
    assert sorted(sizes) == [9, 10, 10, 10]  # htfl: every sample, reshuffled each epoch


def test_fedl2g_trains_in_htfllibs_order_and_studies_shuffled() -> None:
    """HtFLlib clientl2g_feat: load_train_data is DataLoader(train[num_quiz:], drop_last=True,
    shuffle=False); meta_study_loader is DataLoader(train[num_quiz:], drop_last=True,
    shuffle=True); the first num_quiz = quiz_batches * batch_size samples are the quiz."""
    shard = _shard(49)
    client = _client("fedl2g", shard, TrainSettings(shuffle=False, drop_last=True))
    batches = list(client._train_loader)
    assert [len(y) for _, y in batches] == [10, 10, 10]  # 39 after the quiz: trains on 30
    seen = torch.cat([y for _, y in batches]).numpy()
    np.testing.assert_array_equal(seen, shard.train_y[10:40])  # after the quiz, in order
    study = [torch.cat([y for _, y in client._study_loader]).numpy() for _ in range(3)]
    assert all(len(s) == 30 for s in study)
    assert any(not np.array_equal(s, shard.train_y[10:40]) for s in study)  # shuffled


# --- FedProto ---------------------------------------------------------------------------------
def test_fedproto_clients_weighting_is_a_plain_mean_over_holders() -> None:
    """HtFLlib serverproto.proto_aggregation: sum of the clients' prototypes / len(list)."""
    a = Upload(0, 4, prototype_payload(np.array([[0.0, 0.0], [2.0, 2.0]]), np.array([3.0, 1.0])))
    b = Upload(1, 9, prototype_payload(np.array([[4.0, 8.0], [0.0, 0.0]]), np.array([9.0, 0.0])))
    out = client_mean_prototypes([a, b], 2, 2)
    np.testing.assert_allclose(out["prototypes"], [[2.0, 4.0], [2.0, 2.0]])  # not 3:9 weighted
    np.testing.assert_allclose(out["counts"], [12.0, 1.0])
    server = get_method("fedproto").server(
        get_method("fedproto").params(weighting="clients"), 2, 2, seed=0
    )
    server.aggregate([a, b])
    np.testing.assert_allclose(server.global_payload()["prototypes"][0], [2.0, 4.0])


def test_fedproto_mse_over_all_rows_is_htfllibs_mseloss() -> None:
    """HtFLlib clientproto: proto_new = rep.detach() with known rows replaced; MSELoss."""
    torch.manual_seed(0)
    rep = torch.randn(5, 3)
    y = torch.tensor([0, 1, 2, 1, 0])
    protos = torch.randn(3, 3)
    present = torch.tensor([1.0, 0.0, 1.0])  # class 1 has no global prototype
    proto_new = rep.detach().clone()
    for i, c in enumerate(y.tolist()):
        if present[c] > 0:
            proto_new[i] = protos[c]
    expected = nn.MSELoss()(proto_new, rep)
    got = mse_over_batch(rep, y, protos, present)
    assert got is not None and float(got) == pytest.approx(float(expected))
    known_only = F.mse_loss(rep[[0, 2, 4]], protos[[0, 2, 0]])
    assert float(got) == pytest.approx(float(known_only) * 3 / 5)  # weaker by the known share


def test_fedproto_prototypes_during_training_are_the_training_features() -> None:
    """HtFLlib clientproto.train collects rep[i] of every batch (train mode) into protos."""
    shard = _shard(39)
    settings = TrainSettings(shuffle=False, drop_last=True)
    during = _client("fedproto", shard, settings, prototypes="during_training")
    during.train()
    payload = during.upload()
    np.testing.assert_allclose(payload["counts"], [10.0, 10.0, 10.0])  # the 30 trained on
    after = _client("fedproto", shard, settings)
    after.train()
    np.testing.assert_allclose(after.upload()["counts"], [13.0, 13.0, 13.0])
    assert not np.allclose(payload["prototypes"], after.upload()["prototypes"])
    during.train()  # a new round starts a new collection
    np.testing.assert_allclose(during.upload()["counts"], [10.0, 10.0, 10.0])


# --- FedTGP -----------------------------------------------------------------------------------
def test_fedtgp_server_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    first = FedTGPServer(FedTGPParams(), 4, 8, seed=7)
    assert torch.equal(torch.rand(3), expected)  # the server did not reseed the process
    second = FedTGPServer(FedTGPParams(), 4, 8, seed=7)
    for a, b in zip(first.generator.parameters(), second.generator.parameters(), strict=True):
        assert torch.equal(a, b)  # and its own start is still reproducible


# --- FD ---------------------------------------------------------------------------------------
def _fd_download(client: ClientSide, contributors: list[int]) -> dict[str, np.ndarray]:
    own = client.upload()
    other = {"logits": own["logits"] + 3.0, "counts": own["counts"]}
    uploads = [Upload(client.shard.client_index, 1, own), Upload(99, 1, other)]
    out = global_logits([u for u in uploads if u.client_index in contributors], 10)
    return out


def test_fd_subtracts_its_upload_only_when_the_server_kept_it(generator_file) -> None:
    client = make_clients("fd", get_method("fd").params(), num_clients=1)[0]
    client.train()
    kept = _fd_download(client, [client.shard.client_index, 99])
    client.receive(kept)
    assert client.teachers is not None
    others_only = torch.from_numpy(kept["logits"])  # mean of two: own excluded -> the other's
    held = client.has_teacher.cpu()
    assert not torch.allclose(client.teachers.cpu()[held], others_only[held])
    set_aside = _fd_download(client, [99])  # the server set this client's upload aside
    client.receive(set_aside)
    np.testing.assert_allclose(client.teachers.cpu().numpy(), set_aside["logits"], rtol=1e-6)


def test_fd_htfllib_teacher_includes_the_clients_own_logits(generator_file) -> None:
    client = make_clients("fd", get_method("fd").params(exclude_own=False), num_clients=1)[0]
    client.train()
    download = _fd_download(client, [client.shard.client_index, 99])
    client.receive(download)
    np.testing.assert_allclose(client.teachers.cpu().numpy(), download["logits"], rtol=1e-6)


# --- FML --------------------------------------------------------------------------------------
def test_fml_htfllib_loss_gives_htfllibs_gradients() -> None:
    """HtFLlib clientfml: KLDivLoss() (element-wise mean), no detach, two backward calls,
    clip_grad_norm_(model, 10) and clip_grad_norm_(global_model, 10) separately."""
    shard = _shard(20)
    client = _client(
        "fml", shard, TrainSettings(), kl_reduction="elementwise", detach_teacher=False
    )
    x, y = torch.from_numpy(shard.train_x[:10]), torch.from_numpy(shard.train_y[:10])
    client._set_mode(True)
    client.optimizer.zero_grad()
    client.training_loss(x, y).backward()
    ours = [p.grad.clone() for p in (*client.model.parameters(), *client.meme.parameters())]

    client.optimizer.zero_grad()
    kl = nn.KLDivLoss()
    output, output_g = client.model(x), client.meme(x)
    loss = (
        F.cross_entropy(output, y) * 0.5
        + kl(F.log_softmax(output, dim=1), F.softmax(output_g, dim=1)) * 0.5
    )
    loss_g = (
        F.cross_entropy(output_g, y) * 0.5
        + kl(F.log_softmax(output_g, dim=1), F.softmax(output, dim=1)) * 0.5
    )
    loss.backward(retain_graph=True)
    loss_g.backward()
    theirs = [p.grad.clone() for p in (*client.model.parameters(), *client.meme.parameters())]
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


def test_fml_clips_each_model_on_its_own() -> None:
    shard = _shard(20)
    client = _client("fml", shard, TrainSettings())
    for p in (*client.model.parameters(), *client.meme.parameters()):
        p.grad = torch.full_like(p, 100.0)
    client.clip_gradients([])
    for module in (client.model, client.meme):
        norm = torch.norm(torch.stack([p.grad.norm() for p in module.parameters()]))
        assert float(norm) == pytest.approx(10.0, rel=1e-4)  # each model at 10, not both at 10


# --- FedGen -----------------------------------------------------------------------------------
def test_fedgen_htfllib_generator_from_round_one_in_train_mode() -> None:
    method = get_method("fedgen")
    params = method.params(generator_from="start", generator_mode="train", noise="uniform")
    server = method.server(params, 3, 16, seed=0)
    first = server.global_payload()
    assert any(k.startswith(fedgen.GENERATOR) for k in first)  # before any training
    assert "label_prior" not in first
    default = method.server(method.params(), 3, 16, seed=0).global_payload()
    assert not any(k.startswith(fedgen.GENERATOR) for k in default)

    shard = _shard(30)
    client = _client(
        "fedgen",
        shard,
        TrainSettings(),
        **{"generator_from": "start", "generator_mode": "train", "noise": "uniform"},
    )
    client.receive(first)
    assert client.label_prior is not None  # its own label counts until the global prior
    modes = []
    client.generator.hidden.register_forward_hook(lambda m, i, o: modes.append(m.training))
    client.train()
    assert modes and all(modes)  # BatchNorm in train mode, as HtFLlib's generator
    noise = []
    client.generator.hidden.register_forward_hook(lambda m, i, o: noise.append(i[0]))
    client.train()
    z = torch.cat(noise)[:, : params.noise_dim]
    assert float(z.min()) >= 0.0 and float(z.max()) < 1.0  # U(0, 1), as HtFLlib draws it


# --- the shared-model methods (FML, FedKD, FedMRL) ---------------------------------------------
@pytest.mark.parametrize("name", ["fml", "fedmrl"])
def test_shared_model_clients_weighting_is_htfllibs_plain_mean(name: str) -> None:
    """HtFLlib serverfml.py / servermrl.py aggregate_parameters: ``server_param.data +=
    client_param.data.clone() * 1/len(self.uploaded_ids)``, whatever the sample counts."""
    uploads = [Upload(0, 1, {"w": np.array([0.0, 2.0])}), Upload(1, 3, {"w": np.array([4.0, 6.0])})]
    method = get_method(name)
    plain = method.server(method.params(weighting="clients"), 2, 4, seed=0)
    plain.aggregate(uploads)
    np.testing.assert_allclose(plain.global_payload()["w"], [2.0, 4.0])
    fedavg = method.server(method.params(), 2, 4, seed=0)
    fedavg.aggregate(uploads)
    np.testing.assert_allclose(fedavg.global_payload()["w"], [3.0, 5.0])  # 1:3 by samples


def test_fedkd_clients_weighting_is_htfllibs_plain_mean() -> None:
    """HtFLlib serverkd.py: ``global_param[server_k] += client_param[client_k] *
    1/len(self.uploaded_ids)``; here the mean of the (dense, 1-D) updates."""
    from htfl.algorithms.fedkd import BASE_VERSION, decompress

    def upload(i: int, n: int, w: list[float]) -> Upload:
        payload = {"w": np.array(w, dtype=np.float32), BASE_VERSION: np.array(0, np.int64)}
        return Upload(i, n, payload)

    method = get_method("fedkd")
    for weighting, expected in (("clients", [2.0, 4.0]), ("samples", [3.0, 5.0])):
        server = method.server(method.params(weighting=weighting), 2, 4, seed=0)
        server.aggregate([upload(0, 1, [0.0, 2.0]), upload(1, 3, [4.0, 6.0])])
        np.testing.assert_allclose(decompress(server.global_payload())["w"], expected)
