"""HtFLlib's Amazon MLP families (MLPs, MLP_1layer, MLP_layers) and its heterogeneous-head
families (HtFE-img-8-HtC-img-4, Res34-HtC-img-4): members, counts, which methods take them,
and an Amazon review folder in PFLlib's exact format imported and trained on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from htfl.algorithms import get_method
from htfl.algorithms.base import TrainSettings
from htfl.cli import main
from htfl.datasets import Manifest, load_shard
from htfl.datasets.shard import ClientShard
from htfl.models import build_model, count_parameters
from htfl.models.base import has_linear_head
from htfl.models.htfllib import FAMILIES, memory_problem
from htfl.workstation.config.experiment import ConfigError, experiment_from_dict
from htfl.workstation.config.preflight import check_files
from tests.datasets.test_import_pfllib import write_pfllib
from tests.support.rounds import evaluate_clients, run_round

AMAZON = ("MLPs", "MLP_1layer", "MLP_layers")
HTC = ("HtFE-img-8-HtC-img-4", "Res34-HtC-img-4")

#: HtFLlib's own ``BaseHeadSplit(args, cid)`` for clients 0..k-1 (and ``is_global=True``),
#: counted with HtFLlib e959261 and torchvision 0.29.1 at num_classes 10, feature_dim 512,
#: 3x32x32 images (FedAvgCNN dim=1600) and AmazonMLP's 5000 features. By hand, e.g.
#: AmazonMLP([]) = Linear(5000, 100) + head Linear(512, 10) = 500,100 + 5,130 = 505,230;
#: Res34 with Head([512, 256]) = torchvision's resnet34 without its fc (21,797,672 - 513,000)
#: + Linear(512, 256) + Linear(256, 10) = 21,284,672 + 131,328 + 2,570 = 21,418,570.
HTFLLIB_COUNTS = {
    "HtFE-img-8-HtC-img-4": (
        878_538, 5_867_690, 2_357_770, 11_243_466,
        21_289_802, 23_775_818, 42_634_058, 58_210_762,
    ),
    "Res34-HtC-img-4": (21_289_802, 21_552_458, 21_418_570, 21_351_626),
    "MLPs": (505_230, 2_555_730, 5_556_730, 5_626_930),
    "MLP_1layer": (1_025_430, 2_555_730),
    "MLP_layers": (2_555_730, 5_556_730, 5_626_930),
}  # fmt: skip
#: the shared model of FML/FedKD/FedMRL in the HtC families: FedAvgCNN with heads[0]
HTFLLIB_GLOBAL_COUNT = 878_538


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _shape(arch: str) -> tuple[int, ...]:
    return (5000,) if arch.startswith("amazon_mlp") else (3, 32, 32)


@pytest.mark.parametrize("family", sorted(HTFLLIB_COUNTS))
def test_counts_equal_htfllibs_own_models(family: str) -> None:
    with torch.device("meta"):  # counted, not allocated
        counts = tuple(
            count_parameters(build_model(a, _shape(a), 10, 512)) for a in FAMILIES[family]
        )
    assert counts == HTFLLIB_COUNTS[family]


def test_members_are_htfllibs_in_client_order() -> None:
    """Client i: extractor models[i % 8] with heads[i % 4] (HtFLlib's BaseHeadSplit), so the
    pairs repeat after 8 clients; Res34 pairs its one extractor with each head."""
    assert FAMILIES["HtFE-img-8-HtC-img-4"] == (
        "fedavgcnn_htc", "googlenet_htc512", "tv_mobilenet_v2_htc256", "tv_resnet18_htc128",
        "tv_resnet34_htc", "tv_resnet50_htc512", "tv_resnet101_htc256", "tv_resnet152_htc128",
    )  # fmt: skip
    assert FAMILIES["Res34-HtC-img-4"] == (
        "tv_resnet34_htc", "tv_resnet34_htc512", "tv_resnet34_htc256", "tv_resnet34_htc128",
    )  # fmt: skip
    assert FAMILIES["MLPs"] == (
        "amazon_mlp", "amazon_mlp_500", "amazon_mlp_1000_500", "amazon_mlp_1000_500_200",
    )  # fmt: skip
    assert FAMILIES["MLP_1layer"] == ("amazon_mlp_200", "amazon_mlp_500")
    assert FAMILIES["MLP_layers"] == FAMILIES["MLPs"][1:]


def test_a_heterogeneous_head_is_htfllibs_head_relu_included() -> None:
    torch.manual_seed(0)
    model = build_model("tv_resnet34_htc256", (3, 32, 32), 10, 64).eval()
    assert [type(m) for m in model.head.fc] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU]
    assert (model.head.fc[0].in_features, model.head.fc[0].out_features) == (64, 256)
    assert not has_linear_head(model)
    logits = model(torch.randn(3, 3, 32, 32))
    assert logits.shape == (3, 10) and bool((logits >= 0).all())  # HtFLlib's ReLU on logits
    one = build_model("fedavgcnn_htc", (3, 32, 32), 10, 64).head.fc
    assert [type(m) for m in one] == [nn.Linear, nn.ReLU] and one[0].out_features == 10


def test_an_amazon_mlp_is_htfllibs_encoder_pooled_to_d() -> None:
    model = build_model("amazon_mlp_1000_500", (5000,), 2, 100)
    linears = [m for m in model.feature_extractor.encoder if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (5000, 1000), (1000, 500), (500, 100),
    ]  # fmt: skip
    assert isinstance(model.feature_extractor.encoder[-1], nn.ReLU)
    assert isinstance(model.feature_extractor.fc, nn.AdaptiveAvgPool1d) and has_linear_head(model)
    with pytest.raises(ValueError, match="feature vector"):
        build_model("amazon_mlp", (3, 32, 32), 2)


NEW_MEMBERS = sorted({a for f in (*AMAZON, *HTC) for a in FAMILIES[f]})


@pytest.mark.parametrize("arch", NEW_MEMBERS)
def test_every_new_member_trains_one_step_at_toy_size(arch: str) -> None:
    torch.manual_seed(0)
    shape = (64,) if arch.startswith("amazon_mlp") else (3, 32, 32)
    model = build_model(arch, shape, 4, 16)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.rand(4, *shape)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    head_moved = [not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True)]
    assert any(head_moved[-2:]), arch  # the head's last layer learnt from this step


def _raw(family: str, method: str, **params) -> dict:
    return {
        "experiment": {"id": "fam", "rounds": 1, "preset": "htfllib"},
        "algorithm": {"name": method, "params": params},
        "data": {"dataset": "digits"},
        "devices": {"classes": {"jetson-orin-nano": 8}},
        "models": {"family": family},
    }


@pytest.mark.parametrize("method", ["lg_fedavg", "fedgh", "fedgen"])
@pytest.mark.parametrize("family", HTC)
def test_head_exchanging_methods_refuse_heterogeneous_heads(family: str, method: str) -> None:
    with pytest.raises(ConfigError) as info:
        experiment_from_dict(_raw(family, method))
    assert any(
        p.startswith(f"models.family: {method} exchanges the head") and "tv_resnet34_htc" in p
        for p in info.value.problems
    ), info.value.problems


@pytest.mark.parametrize("method", ["fedproto", "fedtgp", "fd", "local"])
def test_methods_that_keep_their_heads_take_them(method: str) -> None:
    exp = experiment_from_dict(_raw("HtFE-img-8-HtC-img-4", method))
    assert exp.models.arch_for("jetson-orin-nano", 12) == "tv_resnet34_htc"


def test_the_preset_shares_htfllibs_global_model() -> None:
    """HtFLlib's FML/FedKD/FedMRL servers build ``args.global_model`` (FedAvgCNN) with the
    family's first head for the HtC families, and the first member otherwise."""
    for method in ("fml", "fedkd", "fedmrl"):
        exp = experiment_from_dict(_raw("Res34-HtC-img-4", method))
        assert exp.algorithm_params.shared_arch == "fedavgcnn_htc"
        with torch.device("meta"):
            shared = build_model("fedavgcnn_htc", (3, 32, 32), 10, 512)
        assert count_parameters(shared) == HTFLLIB_GLOBAL_COUNT
    assert experiment_from_dict(_raw("MLPs", "fml")).algorithm_params.shared_arch == "amazon_mlp"
    explicit = experiment_from_dict(_raw("MLPs", "fml", shared_arch="amazon_mlp_500"))
    assert explicit.algorithm_params.shared_arch == "amazon_mlp_500"


def test_amazon_members_are_sized_at_5000_features() -> None:
    assert memory_problem("amazon_mlp_1000_500_200", "jetson-nano", 512) is None
    assert memory_problem("amazon_mlp", "jetson-nano", 512, (3, 32, 32)) is None  # not sized


# --------------------------------------------------------------------------- Amazon reviews

DOMAINS = ("books", "dvd", "electronics", "kitchen")


def write_amazon(root: Path, rows: int = 24, features: int = 5000, seed: int = 0) -> Path:
    """An AmazonReview folder as PFLlib's ``dataset/generate_AmazonReview.py`` writes it: one
    client per domain; x is the dense float32 bag-of-words (``todense()``: an np.matrix, row
    slices of which stay np.matrix), y the int64 sentiment ``(yy + 1) / 2`` in {0, 1}; 75 %
    train; config.json with ``non_iid``, ``balance`` and ``partition`` null."""
    rng = np.random.default_rng(seed)
    clients = []
    for _ in DOMAINS:
        words = rng.poisson(0.05, size=(rows, features)).astype(np.float32)
        x = np.asmatrix(words)
        y = rng.integers(0, 2, size=rows).astype(np.int64)
        train = (3 * rows) // 4
        clients.append((x[:train], y[:train], x[train:], y[train:]))
    write_pfllib(root, clients, 2)
    config = json.loads((root / "config.json").read_text())
    config.update(non_iid=None, balance=None, partition=None)
    (root / "config.json").write_text(json.dumps(config))
    return root


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_an_amazon_folder_imports_and_every_mlp_family_trains_on_it(tmp_path: Path) -> None:
    folder = write_amazon(tmp_path / "AmazonReview")
    out = tmp_path / "shards"
    assert main(["data", "import-pfllib", str(folder), "--out", str(out)]) == 0
    manifest = Manifest.read(out)
    assert manifest.input_shape == (5000,) and manifest.num_classes == 2
    assert manifest.num_clients == len(DOMAINS)
    shard = load_shard(out, 1)
    assert type(shard.train_x) is np.ndarray and shard.train_x.shape == (18, 5000)
    for family in AMAZON:
        raw = {
            "experiment": {"id": "amazon", "rounds": 1, "preset": "htfllib"},
            "algorithm": {"name": "fedproto"},
            "data": {"dataset": "AmazonReview", "partition": "imported", "manifest": str(out)},
            "devices": {"classes": {"jetson-nano": 4}},
            "models": {"family": family, "feature_dim": 64},
        }
        exp = experiment_from_dict(raw)
        assert check_files(exp) == []
        method = get_method("fedproto")
        clients = []
        for i in range(manifest.num_clients):  # as the device runtime builds them
            shard = load_shard(out, i)
            arch = exp.models.arch_for("jetson-nano", i)
            torch.manual_seed(0)
            model = build_model(arch, shard.input_shape, shard.num_classes, 64)
            clients.append(method.client(model, shard, exp.training, exp.algorithm_params, i))
        assert [c.model.arch for c in clients] == [
            FAMILIES[family][i % len(FAMILIES[family])] for i in range(4)
        ]
        server = method.server(exp.algorithm_params, 2, 64, seed=0)
        uploads = run_round(server, clients)
        assert len(uploads) == 4 and all(u.num_samples == 18 for u in uploads)
        results = evaluate_clients(server, clients)
        assert all(r.num_samples == 6 and 0.0 <= r.accuracy <= 1.0 for r in results)
    # an image family on review features is refused before anything starts, naming the key
    raw["models"] = {"family": "Res34-HtC-img-4"}
    problems = check_files(experiment_from_dict(raw))
    assert len(problems) == 4 and all(p.startswith("models.family: architecture") for p in problems)
    assert "'tv_resnet34_htc' cannot take input shape (5000,)" in problems[0]


def _image_shard(index: int, rng: np.random.Generator) -> ClientShard:
    x = rng.normal(size=(30, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 4, size=30).astype(np.int64)
    return ClientShard(index, x[:24], y[:24], x[24:], y[24:], 4, (3, 16, 16))


@pytest.mark.parametrize("name", ["local", "fedproto", "fedtgp", "fd", "fml", "fedkd", "fedmrl"])
def test_a_method_that_keeps_its_heads_runs_a_round_with_heterogeneous_ones(name: str) -> None:
    """Two clients whose heads differ in depth and width (FedAvgCNN with Head([d]), ResNet18
    with Head([d, 128])); the shared-model methods share HtFLlib's global FedAvgCNN one."""
    method = get_method(name)
    shared = {"shared_arch": "fedavgcnn_htc"} if name in ("fml", "fedkd", "fedmrl") else {}
    params = method.params(**shared)
    settings = TrainSettings(batch_size=8, learning_rate=0.01, shuffle=False, drop_last=True)
    rng = np.random.default_rng(0)
    clients = []
    for i, arch in enumerate(("fedavgcnn_htc", "tv_resnet18_htc128")):
        torch.manual_seed(0)
        model = build_model(arch, (3, 16, 16), 4, 32)
        clients.append(method.client(model, _image_shard(i, rng), settings, params, i))
    server = method.server(params, 4, 32, seed=0)
    for _ in range(2):  # the second round uses what the first one aggregated
        uploads = run_round(server, clients)
    assert [u.client_index for u in uploads] == [0, 1]
    results = evaluate_clients(server, clients)
    assert [r.num_samples for r in results] == [6, 6]
    assert all(0.0 <= r.accuracy <= 1.0 for r in results)
