"""Tests for the model zoo (htfl.models): the SplitModel contract on every arch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from htfl.models import (
    ARCHITECTURES,
    SplitModel,
    UnknownArchitectureError,
    build_model,
    count_parameters,
)
from htfl.models.htfllib import FAMILIES
from htfl.models.mobilenet import mobilenet_v2

EXPECTED_ARCHS = {
    "cnn4",
    "resnet4",
    "resnet6",
    "resnet8",
    "resnet10",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "mobilenet_v2",
    "harcnn",
    # HtFLlib's family members (tests/test_htfllib_models.py)
    "fedavgcnn",
    "tv_resnet18",
    "tv_resnet34",
    "tv_resnet50",
    "tv_resnet101",
    "tv_resnet152",
    "googlenet",
    "tv_mobilenet_v2",
}
#: the other HtFLlib members (its own ResNets, ViT, text, sensor): tests/test_htfllib_models.py
HTFLLIB_ONLY = {a for members in FAMILIES.values() for a in members} - EXPECTED_ARCHS
LIGHT_IMAGE_ARCHS = [
    "cnn4",
    "resnet4",
    "resnet6",
    "resnet8",
    "resnet10",
    "resnet18",
    "resnet34",
    "mobilenet_v2",
]
DEEP_ARCHS = ["resnet50", "resnet101", "resnet152"]
RESNET_CHAIN = ["resnet4", "resnet6", "resnet8", "resnet10", "resnet18", "resnet34"]
IMAGE_SHAPES = [(1, 8, 8), (3, 32, 32)]
HAR_SHAPE = (9, 128)
NUM_CLASSES = 10
BATCH = 2

NATURAL_CASES = [(a, s) for a in LIGHT_IMAGE_ARCHS for s in IMAGE_SHAPES] + [("harcnn", HAR_SHAPE)]


#: HtFLlib's members pool twice or more before their head: they need 16x16 or larger
NEEDS_16 = {"fedavgcnn", "googlenet"}


def natural_shape(arch: str) -> tuple[int, ...]:
    if arch == "harcnn":
        return HAR_SHAPE
    return (3, 32, 32) if arch in NEEDS_16 else (1, 8, 8)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_registry_has_exactly_the_documented_names():
    assert set(ARCHITECTURES) == EXPECTED_ARCHS | HTFLLIB_ONLY


@pytest.mark.parametrize(("arch", "shape"), NATURAL_CASES, ids=lambda v: str(v))
def test_shapes_and_gradients_on_natural_input(arch, shape):
    model = build_model(arch, shape, NUM_CLASSES)
    assert isinstance(model, SplitModel)
    assert model.arch == arch
    assert model.feature_dim == 512
    assert model.num_classes == NUM_CLASSES
    assert isinstance(model.head, nn.Linear)
    assert (model.head.in_features, model.head.out_features) == (512, NUM_CLASSES)

    x = torch.randn(BATCH, *shape)
    feats, logits = model.forward_with_features(x)
    assert feats.shape == (BATCH, 512)
    assert logits.shape == (BATCH, NUM_CLASSES)
    assert model.features(x).shape == (BATCH, 512)
    assert model(x).shape == (BATCH, NUM_CLASSES)

    # Both training entry points must backpropagate into the extractor and the head.
    for path, out in (("forward", model(x)), ("forward_with_features", logits)):
        model.zero_grad(set_to_none=True)
        out.pow(2).sum().backward()
        for name, p in model.named_parameters():
            assert p.grad is not None, f"{arch} {path}: no gradient for {name}"
        extractor_grads = [p.grad for p in model.feature_extractor.parameters()]
        assert extractor_grads
        assert any(g.abs().sum() > 0 for g in extractor_grads), f"{arch} {path}: zero grads"
        assert model.head.weight.grad.abs().sum() > 0
        assert model.head.bias.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", sorted(EXPECTED_ARCHS))
def test_feature_dim_is_honoured(arch):
    shape = natural_shape(arch)
    model = build_model(arch, shape, NUM_CLASSES, feature_dim=64).eval()
    assert model.feature_dim == 64
    assert model.head.in_features == 64
    with torch.no_grad():
        feats, logits = model.forward_with_features(torch.randn(BATCH, *shape))
    assert feats.shape == (BATCH, 64)
    assert logits.shape == (BATCH, NUM_CLASSES)


@pytest.mark.parametrize("arch", DEEP_ARCHS)
def test_deep_resnets_forward_on_small_images(arch):
    model = build_model(arch, (1, 8, 8), NUM_CLASSES)
    feats, logits = model.forward_with_features(torch.randn(BATCH, 1, 8, 8))
    assert feats.shape == (BATCH, 512)
    assert logits.shape == (BATCH, NUM_CLASSES)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("shape", IMAGE_SHAPES, ids=str)
def test_resnet_parameter_counts_strictly_increase_with_depth(shape):
    counts = [count_parameters(build_model(a, shape, NUM_CLASSES)) for a in RESNET_CHAIN]
    assert all(a < b for a, b in zip(counts, counts[1:], strict=False)), dict(
        zip(RESNET_CHAIN, counts, strict=True)
    )


def test_deep_resnets_are_bigger_than_resnet34_and_increase():
    counts = [count_parameters(build_model(a, (1, 8, 8), NUM_CLASSES)) for a in DEEP_ARCHS]
    r34 = count_parameters(build_model("resnet34", (1, 8, 8), NUM_CLASSES))
    assert r34 < counts[0] < counts[1] < counts[2]


def test_count_parameters_matches_hand_count_for_cnn4_on_digits():
    model = build_model("cnn4", (1, 8, 8), NUM_CLASSES)
    # conv1 1->32 k5, conv2 32->64 k5, 8x8 pools to 2x2 so fc 64*2*2->512, head 512->10.
    expected = (1 * 32 * 25 + 32) + (32 * 64 * 25 + 64) + (256 * 512 + 512) + (512 * 10 + 10)
    assert count_parameters(model) == expected
    for p in model.head.parameters():
        p.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == expected - (512 * 10 + 10)
    assert count_parameters(model) == expected


@pytest.mark.parametrize("arch", ["cnn4", "resnet8", "mobilenet_v2", "harcnn"])
def test_forward_is_head_of_features(arch):
    shape = natural_shape(arch)
    model = build_model(arch, shape, NUM_CLASSES).eval()
    x = torch.randn(BATCH, *shape)
    with torch.no_grad():
        feats, logits = model.forward_with_features(x)
        torch.testing.assert_close(feats, model.features(x))
        torch.testing.assert_close(logits, model(x))
        torch.testing.assert_close(logits, model.head(feats))
        # Features must depend on the input (not a constant map).
        assert not torch.allclose(feats[0], feats[1])


@pytest.mark.parametrize("arch", ["resnet152", "mobilenet_v2"])
def test_fresh_deep_models_give_usable_features_in_eval_mode(arch):
    # Before any training BN is the identity in eval mode, so the init alone must keep
    # the signal scale: a round-0 evaluation should neither explode nor collapse.
    model = build_model(arch, (3, 32, 32), NUM_CLASSES).eval()
    with torch.no_grad():
        feats = model.features(torch.randn(BATCH, 3, 32, 32))
    assert feats.abs().max() < 100
    assert (feats[0] - feats[1]).abs().max() > 1e-3


@pytest.mark.parametrize("shape", [(9, 64), (3, 4), (9, 200)], ids=str)
def test_harcnn_accepts_other_lengths(shape):
    model = build_model("harcnn", shape, 6, feature_dim=32)
    feats, logits = model.forward_with_features(torch.randn(BATCH, *shape))
    assert feats.shape == (BATCH, 32)
    assert logits.shape == (BATCH, 6)


def test_cnn4_accepts_mnist_sized_images():
    model = build_model("cnn4", (1, 28, 28), NUM_CLASSES)
    assert model(torch.randn(BATCH, 1, 28, 28)).shape == (BATCH, NUM_CLASSES)


def test_mobilenet_width_multiplier_shrinks_the_model():
    full = mobilenet_v2((3, 32, 32), NUM_CLASSES)
    half = mobilenet_v2((3, 32, 32), NUM_CLASSES, width_mult=0.5)
    assert count_parameters(half) < count_parameters(full)
    assert half.features(torch.randn(BATCH, 3, 32, 32)).shape == (BATCH, 512)


def test_unknown_arch_lists_known_names():
    with pytest.raises(UnknownArchitectureError) as excinfo:
        build_model("resnet999", (3, 32, 32), NUM_CLASSES)
    assert isinstance(excinfo.value, ValueError)
    message = str(excinfo.value)
    assert "resnet999" in message
    for name in EXPECTED_ARCHS:
        assert name in message


@pytest.mark.parametrize(
    ("arch", "shape"),
    [
        ("harcnn", (1, 8, 8)),
        ("harcnn", (3, 32, 32)),
        ("cnn4", (9, 128)),
        ("resnet18", (9, 128)),
        ("resnet50", (9, 128)),
        ("mobilenet_v2", (9, 128)),
        ("cnn4", (1, 2, 2)),
        ("harcnn", (9, 2)),
        ("resnet8", (3, 32, 32, 1)),
    ],
    ids=str,
)
def test_incompatible_input_shape_names_arch_and_shape(arch, shape):
    with pytest.raises(ValueError) as excinfo:
        build_model(arch, shape, NUM_CLASSES)
    assert not isinstance(excinfo.value, UnknownArchitectureError)
    message = str(excinfo.value)
    assert arch in message
    assert str(shape) in message


@pytest.mark.parametrize(("feature_dim", "num_classes"), [(0, 10), (-5, 10), (64, 0)])
def test_invalid_dimensions_are_rejected(feature_dim, num_classes):
    with pytest.raises(ValueError):
        build_model("cnn4", (1, 8, 8), num_classes, feature_dim=feature_dim)


@pytest.mark.parametrize("arch", ["cnn4", "resnet8", "mobilenet_v2", "harcnn"])
def test_same_seed_gives_identical_weights(arch):
    # Clients of one arch seed torch before building so they start from the same model.
    shape = natural_shape(arch)
    torch.manual_seed(123)
    a = build_model(arch, shape, NUM_CLASSES).state_dict()
    torch.manual_seed(123)
    b = build_model(arch, shape, NUM_CLASSES).state_dict()
    torch.manual_seed(124)
    c = build_model(arch, shape, NUM_CLASSES).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
