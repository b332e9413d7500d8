"""HtFLlib's family members and `[models] family`: torchvision's parameter counts, HtFLlib's
head replacement, family[i % k] per client, and a model too large for its class."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from htfl.devices import DEVICE_CLASSES
from htfl.models import ARCHITECTURES, build_model, count_parameters
from htfl.models.base import has_linear_head
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


# --------------------------------------------------------------------------- the other families

#: torchvision's published ViT counts (224x224, 1000 classes): the classifier is one
#: Linear(768, 1000); HtFLlib swaps it for pool-to-d and its Linear-Tanh-Linear head.
PUBLISHED_VIT = {"tv_vit_b_16": 86_567_656, "tv_vit_b_32": 88_224_232}


@pytest.mark.parametrize("arch", sorted(PUBLISHED_VIT))
def test_vit_counts_are_torchvisions(arch: str) -> None:
    with torch.device("meta"):
        model = build_model(arch, (3, 224, 224), 1000, 768)
    torchvision_head = 768 * 1000 + 1000
    assert count_parameters(model.feature_extractor) + torchvision_head == PUBLISHED_VIT[arch]


@pytest.mark.parametrize("arch", sorted(PUBLISHED_VIT))
def test_vit_keeps_htfllibs_head_and_pools_the_class_token(arch: str) -> None:
    with torch.device("meta"):
        model = build_model(arch, (3, 32, 32), 10, 512)
        features, logits = model.forward_with_features(torch.empty(2, 3, 32, 32))
    assert isinstance(model.feature_extractor.heads, nn.AdaptiveAvgPool1d)
    assert [type(m) for m in model.head] == [nn.Linear, nn.Tanh, nn.Linear]
    assert (model.head[0].in_features, model.head[0].out_features) == (512, 768)
    assert model.head[2].out_features == 10 and not has_linear_head(model)
    assert features.shape == (2, 512) and logits.shape == (2, 10)
    # 32x32 in 16-pixel patches: 4 patches and the class token (torchvision's image_size=32)
    assert model.feature_extractor.encoder.pos_embedding.shape == (1, 5 if "16" in arch else 2, 768)
    with pytest.raises(ValueError, match="multiple of"):
        build_model(arch, (3, 40, 40), 10)


def _block(width: int) -> int:  # a BasicBlock: two 3x3 convs and two BatchNorms
    return 2 * 9 * width * width + 2 * 2 * width


def _first(inp: int, width: int) -> int:  # a stage's first block, stride 2, and its shortcut
    return 9 * inp * width + 9 * width * width + 2 * 2 * width + inp * width + 2 * width


def test_htfllibs_small_resnets_are_torchvisions_resnet18_cut_short() -> None:
    """HtFLlib's resnet10/8/6/4 (its resnet.py) are torchvision's ImageNet-style net with one
    block per stage and the last stages left off: counted from resnet18's published figure."""
    features18 = 11_689_512 - (512 * 1000 + 1000)
    expected = {"htfllib_resnet10": features18 - sum(_block(w) for w in (64, 128, 256, 512))}
    expected["htfllib_resnet8"] = expected["htfllib_resnet10"] - _first(256, 512)
    expected["htfllib_resnet6"] = expected["htfllib_resnet8"] - _first(128, 256)
    expected["htfllib_resnet4"] = expected["htfllib_resnet6"] - _first(64, 128)
    widths = {"htfllib_resnet10": 512, "htfllib_resnet8": 256, "htfllib_resnet6": 128}
    for arch, count in expected.items():
        width = widths.get(arch, 64)
        with torch.device("meta"):
            model = build_model(arch, (3, 224, 224), 1000, width)
        # HtFLlib's resnetN(num_classes=1000): features plus fc Linear(width, 1000)
        assert count_parameters(model) == count + width * 1000 + 1000, arch
    resnet4 = build_model("htfllib_resnet4", (3, 32, 32), 10, 512)
    stem = resnet4.feature_extractor.conv1
    assert (stem.kernel_size, stem.stride) == ((7, 7), (2, 2))  # unlike the zoo's resnet4
    assert isinstance(resnet4.feature_extractor.maxpool, nn.MaxPool2d)
    assert all(m.weight.eq(1).all() for m in resnet4.modules() if isinstance(m, nn.BatchNorm2d))
    # HtFLlib pools resnet4's 64 channels up to d = 512 (each value repeated 8 times)
    features = resnet4.eval().features(torch.randn(2, 3, 32, 32))
    assert torch.equal(features[:, :8], features[:, :1].expand(2, 8))


#: HtFLlib's family table (system/main.py), its constructors in htfl's names
HTFLLIB_FAMILY_SIZES = {
    "HtFE-img-2": 2, "HtFE-img-3": 3, "HtFE-img-4": 4, "HtFE-img-5": 5, "HtFE-img-8": 8,
    "HtFE-img-9": 9, "HtM-img-10": 10, "HtFE-txt-2": 2, "HtFE-txt-4": 4, "HtFE-txt-5-1": 5,
    "HtFE-txt-5-2": 5, "HtFE-txt-5-3": 5, "HtFE-txt-6": 6, "HtFE-sen-2": 2, "HtFE-sen-3": 3,
    "HtFE-sen-5": 5, "HtFE-sen-8": 8, "MLPs": 4, "MLP_1layer": 2, "MLP_layers": 3,
    # extractor-head pairs, lcm(extractors, heads): tests/test_htfllib_mlp_heads.py
    "HtFE-img-8-HtC-img-4": 8, "Res34-HtC-img-4": 4,
}  # fmt: skip


def test_the_family_table_is_htfllibs() -> None:
    assert {name: len(members) for name, members in FAMILIES.items()} == HTFLLIB_FAMILY_SIZES
    assert FAMILIES["HtFE-img-3"] == ("htfllib_resnet10", "tv_resnet18", "tv_resnet34")
    assert FAMILIES["HtFE-img-9"][:4] == tuple(f"htfllib_resnet{n}" for n in (4, 6, 8, 10))
    assert FAMILIES["HtM-img-10"][-2:] == ("tv_vit_b_16", "tv_vit_b_32")
    assert FAMILIES["HtFE-txt-5-2"] == tuple(f"transformer_h{h}_l4" for h in (1, 2, 4, 8, 16))
    assert FAMILIES["HtFE-txt-6"][3] == "transformer_h8_l2"
    assert FAMILIES["HtFE-sen-5"] == (
        "htfllib_harcnn",
        "htfllib_harcnn_s2",
        "htfllib_harcnn_s3",
        "htfllib_harcnn1",
        "htfllib_harcnn3",
    )


def _toy_input(arch: str) -> tuple[tuple[int, ...], torch.Tensor]:
    if arch.startswith("htfllib_harcnn"):
        return (9, 1, 128), torch.randn(4, 9, 1, 128)
    if any(arch.startswith(p) for p in ("fasttext", "text_", "lstm", "gru", "bilstm", "trans")):
        return (12,), torch.randint(0, 50, (4, 12))
    return (3, 32, 32), torch.randn(4, 3, 32, 32)


TEXT_AND_SENSOR = sorted(
    {a for f, m in FAMILIES.items() if "-txt-" in f or "-sen-" in f for a in m}
)
#: the Transformer members differ only in heads and depth: two of them train below, every
#: one is built (shapes only) in test_every_transformer_member_has_its_heads_and_depth
TRANSFORMERS = [a for a in TEXT_AND_SENSOR if a.startswith("transformer_")]
TRAINED = [a for a in TEXT_AND_SENSOR if a not in TRANSFORMERS] + [
    "transformer_h8_l2",
    "transformer_h16_l4",
]


@pytest.mark.parametrize("arch", TRAINED)
def test_text_and_sensor_members_train_at_toy_size(arch: str) -> None:
    """htfl has no text dataset: the text members are built and trained one step at toy size
    (50 tokens, sequences of 12)."""
    torch.manual_seed(0)
    shape, x = _toy_input(arch)
    options = {"vocab_size": 50} if shape == (12,) else {}
    model = ARCHITECTURES[arch](shape, 6, 16, **options)
    model.train()
    features, logits = model.forward_with_features(x)
    assert features.shape == (4, 16) and logits.shape == (4, 6) and has_linear_head(model)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad), arch
    if shape == (12,):  # float ids (shards are float32) are the same tokens
        model.eval()
        assert torch.allclose(model(x.float()), model(x))


@pytest.mark.parametrize("arch", TRANSFORMERS)
def test_every_transformer_member_has_its_heads_and_depth(arch: str) -> None:
    heads, layers = (int(p[1:]) for p in arch.split("_")[1:])
    with torch.device("meta"):
        model = ARCHITECTURES[arch]((12,), 4, 32, vocab_size=50)
        features = model.features(torch.zeros(2, 12, dtype=torch.long))
    encoder = model.feature_extractor.encoder
    assert len(encoder.layers) == layers and encoder.layers[0].self_attn.num_heads == heads
    assert features.shape == (2, 32)


def test_htfllibs_text_models_end_in_log_softmax_before_the_head() -> None:
    """HtFLlib's fastText/TextLogisticRegression/LSTMNet/GRUNet apply log_softmax after the
    ``fc`` it replaces by the pool: their features are log-probabilities."""
    x = torch.randint(0, 50, (3, 12))
    for arch in ("fasttext", "text_logreg", "lstmnet", "grunet"):
        model = ARCHITECTURES[arch]((12,), 4, 16, vocab_size=50).eval()
        assert torch.allclose(model.features(x).logsumexp(1), torch.zeros(3), atol=1e-5), arch
    bilstm = ARCHITECTURES["bilstm"]((12,), 4, 16, vocab_size=50).eval()
    assert not torch.allclose(bilstm.features(x).logsumexp(1), torch.zeros(3), atol=1e-3)


def test_text_and_sensor_parameter_counts_follow_htfllibs_layers() -> None:
    v, d, c = 50, 16, 4
    # fastText: Embedding(v, d) + fc1 Linear(d, d), then the head Linear(d, c)
    fasttext = ARCHITECTURES["fasttext"]((12,), c, d, vocab_size=v)
    assert count_parameters(fasttext) == v * d + (d * d + d) + (d * c + c)
    # BiLSTM: Embedding(v, d), one bidirectional LSTM(d, d), fc1 Linear(2d, d), head
    lstm = 2 * (4 * d * d + 4 * d * d + 8 * d)
    bilstm = ARCHITECTURES["bilstm"]((12,), c, d, vocab_size=v)
    assert count_parameters(bilstm) == v * d + lstm + (2 * d * d + d) + (d * c + c)
    # Transformer(8 heads, 2 layers): embedding, per layer attention (4 d x d + 4 d), FFN to
    # 2048 and back, two LayerNorms; the positional table is a buffer
    layer = (4 * d * d + 4 * d) + (d * 2048 + 2048 + 2048 * d + d) + 4 * d
    transformer = ARCHITECTURES["transformer_h8_l2"]((12,), c, d, vocab_size=v)
    assert count_parameters(transformer) == v * d + 2 * layer + (d * c + c)
    # HARCNN: Conv2d(9, 32, (1, 9)) and Conv2d(32, 64, (1, 9)); the fc stack is the pool
    harcnn = build_model("htfllib_harcnn", (9, 1, 128), 6, 512)
    assert count_parameters(harcnn) == (9 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (512 * 6 + 6)
    harcnn3 = build_model("htfllib_harcnn3", (9, 1, 128), 6, 512)
    convs = (9 * 32 * 5 + 32) + (32 * 64 * 5 + 64) + (64 * 128 * 5 + 128)
    assert count_parameters(harcnn3) == convs + (512 * 6 + 6)


def test_sensor_members_take_both_window_shapes_and_refuse_a_short_one() -> None:
    torch.manual_seed(0)
    model = build_model("htfllib_harcnn_s2", (9, 128), 6, 32).eval()
    x = torch.randn(2, 9, 128)
    assert torch.equal(model(x), model(x.unsqueeze(2)))
    # stride 2: 128 -> conv 60 -> pool 30 -> conv 11 -> pool 5; 64 x 5 values pooled to d
    assert model.feature_extractor.conv2(model.feature_extractor.conv1(x.unsqueeze(2))).shape == (
        2,
        64,
        1,
        5,
    )
    with pytest.raises(ValueError, match="too short"):
        build_model("htfllib_harcnn", (9, 1, 20), 6)
    with pytest.raises(ValueError, match="fasttext"):
        build_model("fasttext", (3, 32, 32), 6)


def test_a_head_exchanging_method_refuses_the_vit_head() -> None:
    with pytest.raises(ConfigError) as info:
        experiment_from_dict(_raw({"family": "HtM-img-10"}, {"jetson-orin-nano": 10}, "lg_fedavg"))
    assert any(
        "lg_fedavg exchanges the head" in p and "tv_vit_b_16, tv_vit_b_32" in p
        for p in info.value.problems
    ), info.value.problems
    exp = experiment_from_dict(_raw({"family": "HtM-img-10"}, {"jetson-orin-nano": 10}))
    assert exp.models.arch_for("jetson-orin-nano", 9) == "tv_vit_b_32"


def test_text_and_sensor_members_are_sized_at_their_own_input(monkeypatch) -> None:
    """The memory check builds a text member for 200 tokens of a 32000-token vocabulary and a
    sensor member for a 9x1x128 window (not the image shape they cannot take)."""
    small = DEVICE_CLASSES["jetson-nano"]
    profile = small.profile.__class__(**{**small.profile.__dict__, "memory_mb": 512})
    monkeypatch.setitem(
        DEVICE_CLASSES, "jetson-nano", small.__class__(**{**small.__dict__, "profile": profile})
    )
    line = memory_problem("transformer_h16_l16", "jetson-nano", 512)  # 66.8 M parameters
    assert line is not None and line.startswith("transformer_h16_l16 needs about 1,020 MB")
    assert memory_problem("htfllib_harcnn", "jetson-nano", 512) is None
