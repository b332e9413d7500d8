"""HtFLlib's family members and `[models] family`: torchvision's parameter counts, HtFLlib's
head replacement, family[i % k] per client, and a model too large for its class."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from htfl.devices import DEVICE_CLASSES
from htfl.models import build_model, count_parameters
from htfl.models.htfllib import FAMILIES, memory_problem
from htfl.workstation.config.experiment import ConfigError, experiment_from_dict

#: torchvision's published parameter counts (ImageNet: 3x224x224, 1000 classes; the
#: torchvision.models documentation's "num_params"), with the width of each model's classifier
#: input, which HtFLlib's head replacement keeps when feature_dim equals it.
PUBLISHED = {
    "tv_resnet18": (11_689_512, 512),
    "tv_resnet34": (21_797_672, 512),
    "tv_resnet50": (25_557_032, 2048),
    "tv_resnet101": (44_549_160, 2048),
    "tv_resnet152": (60_192_808, 2048),
    "googlenet": (6_624_904, 1024),
    "tv_mobilenet_v2": (3_504_872, 1280),
}


@pytest.mark.parametrize("arch", sorted(PUBLISHED))
def test_parameter_counts_are_torchvisions(arch: str) -> None:
    count, width = PUBLISHED[arch]
    with torch.device("meta"):  # counted, not allocated
        model = build_model(arch, (3, 224, 224), 1000, width)
    assert count_parameters(model) == count


def test_fedavgcnn_has_htfllibs_flattened_dimension() -> None:
    # FedAvgCNN(in_features=3, num_classes=10, dim=1600) for 32x32: 2432 + 51264 + 819712
    # (fc1 1600 -> 512) + 5130 (head 512 -> 10)
    model = build_model("fedavgcnn", (3, 32, 32), 10, 512)
    assert count_parameters(model) == 878_538
    assert model.feature_extractor.fc1[0].in_features == 1600
    assert build_model("fedavgcnn", (1, 28, 28), 10).feature_extractor.fc1[0].in_features == 1024


@pytest.mark.parametrize("arch", FAMILIES["HtFE-img-4"])
def test_head_replacement_pools_to_d_then_a_linear_head(arch: str) -> None:
    with torch.device("meta"):  # shapes only (initialising googlenet costs seconds here)
        model = build_model(arch, (3, 32, 32), 10, 256)
        features, logits = model.train().forward_with_features(torch.empty(4, 3, 32, 32))
    assert isinstance(model.feature_extractor.fc, nn.AdaptiveAvgPool1d)
    assert isinstance(model.head, nn.Linear) and model.head.in_features == 256
    assert features.shape == (4, 256) and logits.shape == (4, 10)


def test_the_smallest_member_trains_end_to_end() -> None:
    torch.manual_seed(0)
    model = build_model("fedavgcnn", (3, 32, 32), 10, 256)
    model.train()
    logits = model(torch.randn(4, 3, 32, 32))
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def _raw(models: dict, classes: dict | None = None, method: str = "fedproto") -> dict:
    return {
        "experiment": {"id": "fam", "rounds": 1},
        "algorithm": {"name": method},
        "data": {"dataset": "digits"},
        "devices": {"classes": classes or {"jetson-nano": 3, "orange-pi-5b": 3}},
        "models": models,
    }


def test_family_assigns_member_i_mod_k_whatever_the_class() -> None:
    exp = experiment_from_dict(_raw({"family": "HtFE-img-4"}))
    members = FAMILIES["HtFE-img-4"]
    assert [exp.models.arch_for(c, i) for i, c in enumerate(["jetson-nano"] * 3 + ["x"] * 0)] == [
        members[0],
        members[1],
        members[2],
    ]
    assert exp.models.arch_for("orange-pi-5b", 5) == members[1]
    assert exp.to_dict()["models"]["family"] == "HtFE-img-4"
    assert experiment_from_dict(exp.to_dict()).models.family == "HtFE-img-4"
    listed = experiment_from_dict(_raw({"family": ["cnn4", "resnet8"]}))
    assert [listed.models.arch_for("jetson-nano", i) for i in range(3)] == [
        "cnn4",
        "resnet8",
        "cnn4",
    ]


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ({"family": "HtFE-img-99"}, "models.family: unknown model family 'HtFE-img-99'"),
        ({"family": ["cnn4", "vgg"]}, "unknown architecture(s) 'vgg'"),
        ({"family": "HtFE-img-2", "jetson-nano": "cnn4"}, "models.family: give a family"),
    ],
)
def test_bad_families_are_named(models: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        experiment_from_dict(_raw(models))
    assert any(message in p for p in info.value.problems), info.value.problems


def test_a_homogeneous_method_refuses_a_family() -> None:
    with pytest.raises(ConfigError, match="needs one architecture"):
        experiment_from_dict(_raw({"family": "HtFE-img-2"}, method="fedavg"))


def test_a_model_too_large_for_its_class_names_the_device_and_its_memory(monkeypatch) -> None:
    assert memory_problem("tv_resnet152", "jetson-nano", 512) is None  # 4 GB is enough
    small = DEVICE_CLASSES["jetson-nano"]
    profile = small.profile.__class__(**{**small.profile.__dict__, "memory_mb": 512})
    monkeypatch.setitem(
        DEVICE_CLASSES, "jetson-nano", small.__class__(**{**small.__dict__, "profile": profile})
    )
    line = memory_problem("tv_resnet152", "jetson-nano", 512)
    assert line is not None and "jetson-nano" in line and "512 MB" in line
    with pytest.raises(ConfigError) as info:
        experiment_from_dict(_raw({"family": "HtFE-img-8"}, {"jetson-nano": 8}))
    assert any(p.startswith("models: client 7: tv_resnet152") for p in info.value.problems)



def test_shallow_resnets_keep_their_blocks_and_deep_ones_start_as_shortcuts() -> None:
    """Zero-initialised, resnet4's single block started as the identity and, at HtFLlib's
    settings (3x32x32, SGD lr 0.01, batch 10), it settled on one class (the measurement is in
    docs/algorithms.md); torchvision and HtFLlib do not zero-initialise by default."""
    for arch in ("resnet4", "resnet6", "resnet8", "resnet10"):
        model = build_model(arch, (3, 32, 32), 10, 64)
        assert all(m.weight.eq(1).all() for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    deep = build_model("resnet18", (3, 32, 32), 10, 64)
    assert any(m.weight.eq(0).all() for m in deep.modules() if isinstance(m, nn.BatchNorm2d))
