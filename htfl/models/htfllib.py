"""HtFLlib's model-family members, written without torchvision, and its head replacement.

HtFLlib (github.com/TsingZ0/HtFLlib, ``system/main.py``) gives client ``i`` the model
``family[i % k]`` of a named family, built by torchvision (``resnet18`` ... ``resnet152``,
``googlenet(aux_logits=False)``) or by its own code (``FedAvgCNN``, ``mobilenet_v2``), and
then (``BaseHeadSplit`` in ``system/flcore/trainmodel/models.py``) replaces the classifier
(``fc``) by ``nn.AdaptiveAvgPool1d(feature_dim)`` and puts a new ``Linear(feature_dim,
num_classes)`` head after it. The modules here follow torchvision's layer structure
(``torchvision/models/resnet.py``, ``googlenet.py``) and HtFLlib's own definitions layer by
layer, with the same initialisation, so a member has the same parameters as its original (the
counts are checked against the published ones in ``tests/test_htfllib_models.py``). torchvision
itself is not used: its PyPI build does not import beside the CPU torch the devices run.

Names: ``fedavgcnn``, ``tv_resnet18`` ... ``tv_resnet152`` (ImageNet-style: 7x7 stem and
max-pool, unlike the zoo's CIFAR-style ``resnetN``), ``googlenet``, ``tv_mobilenet_v2``.
The family table (:data:`FAMILIES`) names members of the other HtFLlib modules too: ``vit.py``,
``text.py``, ``htfllib_har.py``, ``htfllib_mlp.py`` (AmazonMLP) and ``htfllib_heads.py``
(extractors with HtFLlib's heterogeneous heads).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from htfl.models.base import SplitModel, check_feature_dim, image_shape
from htfl.models.htfllib_mlp import AMAZON_FEATURES, amazon_name

__all__ = [
    "FAMILIES",
    "HTC_HEADS",
    "HTFLLIB_ARCHITECTURES",
    "IMG8",
    "family_members",
    "htc_name",
    "shared_member",
]


def _pool_to(feature_dim: int) -> nn.Module:
    """HtFLlib's replacement of the classifier: adaptive average pooling of the flat input."""
    return nn.AdaptiveAvgPool1d(feature_dim)


# --------------------------------------------------------------------------- FedAvgCNN


class FedAvgCNNFeatures(nn.Module):
    """conv(32,5)-relu-pool, conv(64,5)-relu-pool, flatten, fc1(dim->512)-relu, pool to d."""

    def __init__(self, in_channels: int, dim: int, feature_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=5, padding=0, stride=1, bias=True),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(2, 2)),
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(32, 64, kernel_size=5, padding=0, stride=1, bias=True),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(2, 2)),
        )
        self.fc1 = nn.Sequential(nn.Linear(dim, 512), nn.ReLU(inplace=True))
        self.fc = _pool_to(feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.fc1(torch.flatten(self.conv2(self.conv1(x)), 1)))


def fedavgcnn(input_shape: tuple[int, ...], num_classes: int, feature_dim: int = 512) -> SplitModel:
    """FedAvgCNN; its flattened dimension follows the input (1600 for 32x32, 1024 for 28x28)."""
    c, h, w = image_shape("fedavgcnn", input_shape, min_size=16)
    check_feature_dim(feature_dim)
    dim = 64 * (((h - 4) // 2 - 4) // 2) * (((w - 4) // 2 - 4) // 2)
    features = FedAvgCNNFeatures(c, dim, feature_dim)
    return SplitModel(features, feature_dim, num_classes, "fedavgcnn", (c, h, w))


# --------------------------------------------------------------------------- ResNet (torchvision)


def _conv3x3(i: int, o: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(i, o, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(i: int, o: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(i, o, kernel_size=1, stride=stride, bias=False)


class TVBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class TVBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)  # torchvision v1.5: stride on the 3x3
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class TVResNetFeatures(nn.Module):
    """torchvision's ResNet up to ``avgpool`` and ``flatten``; ``fc`` pools to ``d``.

    With fewer than four stages it is HtFLlib's own ``resnet4`` ... ``resnet10``
    (``system/flcore/trainmodel/resnet.py``: torchvision's stem, blocks and init, stages of
    widths 64, 128, 256, 512 cut after the first 1, 2, 3 or 4).
    """

    def __init__(
        self,
        block: type[TVBasicBlock] | type[TVBottleneck],
        layers: tuple[int, ...],
        in_channels: int,
        feature_dim: int,
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widths = (64, 128, 256, 512)[: len(layers)]
        self.stages = [f"layer{i + 1}" for i in range(len(layers))]
        for i, (planes, blocks) in enumerate(zip(widths, layers, strict=True)):
            setattr(self, self.stages[i], self._make_layer(block, planes, blocks, 2 if i else 1))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = _pool_to(feature_dim)
        self.out_channels = widths[-1] * block.expansion
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(
        self, block: type[TVBasicBlock] | type[TVBottleneck], planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers: list[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers.extend(block(self.inplanes, planes, 1, None) for _ in range(1, blocks))
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stages:
            x = getattr(self, name)(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


_Block = type[TVBasicBlock] | type[TVBottleneck]
_TV_RESNETS: dict[str, tuple[_Block, tuple[int, ...]]] = {
    # HtFLlib's own shallow ResNets (its resnet.py; HtFE-img-3 and -9): ImageNet-style like
    # torchvision's, unlike the zoo's CIFAR-style resnet4..10 (3x3 stem, no max-pool, a
    # Linear(C, d) adapter where HtFLlib pools C -> d)
    "htfllib_resnet4": (TVBasicBlock, (1,)),
    "htfllib_resnet6": (TVBasicBlock, (1, 1)),
    "htfllib_resnet8": (TVBasicBlock, (1, 1, 1)),
    "htfllib_resnet10": (TVBasicBlock, (1, 1, 1, 1)),
    "tv_resnet18": (TVBasicBlock, (2, 2, 2, 2)),
    "tv_resnet34": (TVBasicBlock, (3, 4, 6, 3)),
    "tv_resnet50": (TVBottleneck, (3, 4, 6, 3)),
    "tv_resnet101": (TVBottleneck, (3, 4, 23, 3)),
    "tv_resnet152": (TVBottleneck, (3, 8, 36, 3)),
}


def _tv_resnet(arch: str) -> Callable[..., SplitModel]:
    block, layers = _TV_RESNETS[arch]

    def build(input_shape: tuple[int, ...], num_classes: int, feature_dim: int = 512) -> SplitModel:
        c, h, w = image_shape(arch, input_shape)
        check_feature_dim(feature_dim)
        features = TVResNetFeatures(block, layers, c, feature_dim)
        return SplitModel(features, feature_dim, num_classes, arch, (c, h, w))

    build.__name__ = build.__qualname__ = arch
    origin = "torchvision's" if arch.startswith("tv_") else "HtFLlib's"
    build.__doc__ = f"{origin} {arch.split('_', 1)[1]} with HtFLlib's head replacement."
    return build


# --------------------------------------------------------------------------- GoogLeNet


class BasicConv2d(nn.Module):
    def __init__(self, i: int, o: int, kernel_size: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(i, o, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(o, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    def __init__(
        self, i: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool_proj: int
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(i, c1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(i, c3r, kernel_size=1), BasicConv2d(c3r, c3, kernel_size=3, padding=1)
        )
        # torchvision keeps a 3x3 here (its "5x5" branch), so do we
        self.branch3 = nn.Sequential(
            BasicConv2d(i, c5r, kernel_size=1), BasicConv2d(c5r, c5, kernel_size=3, padding=1)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(i, pool_proj, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([b(x) for b in branches], 1)


class GoogLeNetFeatures(nn.Module):
    """torchvision's ``googlenet(aux_logits=False, transform_input=False)`` up to ``fc``."""

    def __init__(self, in_channels: int, feature_dim: int) -> None:
        super().__init__()
        self.conv1 = BasicConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=0.2)
        self.fc = _pool_to(feature_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        for name in ("4a", "4b", "4c", "4d", "4e"):
            x = getattr(self, f"inception{name}")(x)
        x = self.inception5b(self.inception5a(self.maxpool4(x)))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


def googlenet(input_shape: tuple[int, ...], num_classes: int, feature_dim: int = 512) -> SplitModel:
    c, h, w = image_shape("googlenet", input_shape, min_size=16)
    check_feature_dim(feature_dim)
    features = GoogLeNetFeatures(c, feature_dim)
    return SplitModel(features, feature_dim, num_classes, "googlenet", (c, h, w))


# --------------------------------------------------------------------------- MobileNetV2 (HtFLlib)


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBNReLU(nn.Sequential):
    def __init__(self, i: int, o: int, kernel_size: int = 3, stride: int = 1, groups: int = 1):
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(i, o, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(o),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(inp, hidden, kernel_size=1))
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


_MOBILENET_V2_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2Features(nn.Module):
    """HtFLlib's ``mobilenet_v2`` (torchvision's layers; classifier ``fc`` after dropout)."""

    def __init__(self, in_channels: int, feature_dim: int) -> None:
        super().__init__()
        channels, last = _make_divisible(32), _make_divisible(1280)
        features: list[nn.Module] = [ConvBNReLU(in_channels, channels, stride=2)]
        for t, c, n, s in _MOBILENET_V2_SETTING:
            out = _make_divisible(c)
            for i in range(n):
                features.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
        features.append(ConvBNReLU(channels, last, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.dropout = nn.Dropout(0.2)
        self.fc = _pool_to(feature_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, 1).reshape(x.shape[0], -1)
        return self.fc(self.dropout(x))


def tv_mobilenet_v2(
    input_shape: tuple[int, ...], num_classes: int, feature_dim: int = 512
) -> SplitModel:
    c, h, w = image_shape("tv_mobilenet_v2", input_shape)
    check_feature_dim(feature_dim)
    features = MobileNetV2Features(c, feature_dim)
    return SplitModel(features, feature_dim, num_classes, "tv_mobilenet_v2", (c, h, w))


# --------------------------------------------------------------------------- families

#: name -> constructor, merged into :data:`htfl.models.ARCHITECTURES`
HTFLLIB_ARCHITECTURES: dict[str, Callable[..., SplitModel]] = {
    "fedavgcnn": fedavgcnn,
    **{name: _tv_resnet(name) for name in _TV_RESNETS},
    "googlenet": googlenet,
    "tv_mobilenet_v2": tv_mobilenet_v2,
}

IMG8 = (
    "fedavgcnn",
    "googlenet",
    "tv_mobilenet_v2",
    "tv_resnet18",
    "tv_resnet34",
    "tv_resnet50",
    "tv_resnet101",
    "tv_resnet152",
)

_TXT6 = ("fasttext", "lstmnet", "bilstm", "transformer_h8_l2", "text_logreg", "grunet")
_SEN8 = (
    "htfllib_harcnn",
    "htfllib_harcnn_s2",
    "htfllib_harcnn_s3",
    "htfllib_harcnn1",
    "htfllib_harcnn1_s2",
    "htfllib_harcnn1_s3",
    "htfllib_harcnn3",
    "htfllib_harcnn3_s2",
)

#: HtFLlib's heterogeneous heads (``Head(hidden_dims=[512, ...])``, HtC-img-4): the hidden
#: widths between the features and the classes (see :mod:`htfl.models.htfllib_heads`)
HTC_HEADS: tuple[tuple[int, ...], ...] = ((), (512,), (256,), (128,))


def htc_name(base: str, hidden: tuple[int, ...]) -> str:
    """The member ``base`` with HtFLlib's head of ``hidden`` widths: ``tv_resnet34_htc256``."""
    return f"{base}_htc" + "".join(str(w) for w in hidden)


def _with_heads(models: tuple[str, ...], heads: tuple[tuple[int, ...], ...]) -> tuple[str, ...]:
    """Client i's model is ``models[i % m]`` with ``heads[i % h]`` (HtFLlib's BaseHeadSplit),
    which repeats after lcm(m, h) clients: those pairs, in client order."""
    k = math.lcm(len(models), len(heads))
    return tuple(htc_name(models[i % len(models)], heads[i % len(heads)]) for i in range(k))


def _amazon(*hidden: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(amazon_name(h) for h in hidden)


#: HtFLlib's families (``system/main.py``), in HtFLlib's order. HtFE-txt-2 lists the two
#: members HtFLlib means: its main.py lacks the comma between them, so there the family does
#: not build. The HtC families pair extractors and heads as HtFLlib does for client i.
FAMILIES: dict[str, tuple[str, ...]] = {
    "HtFE-img-2": ("fedavgcnn", "tv_resnet18"),
    "HtFE-img-3": ("htfllib_resnet10", "tv_resnet18", "tv_resnet34"),
    "HtFE-img-4": ("fedavgcnn", "googlenet", "tv_mobilenet_v2", "tv_resnet18"),
    "HtFE-img-5": ("googlenet", "tv_mobilenet_v2", "tv_resnet18", "tv_resnet34", "tv_resnet50"),
    "HtFE-img-8": IMG8,
    "HtFE-img-9": (
        "htfllib_resnet4",
        "htfllib_resnet6",
        "htfllib_resnet8",
        "htfllib_resnet10",
        *IMG8[3:],
    ),
    "HtFE-img-8-HtC-img-4": _with_heads(IMG8, HTC_HEADS),
    "Res34-HtC-img-4": _with_heads(("tv_resnet34",), HTC_HEADS),
    "HtM-img-10": (*IMG8, "tv_vit_b_16", "tv_vit_b_32"),
    "HtFE-txt-2": ("fasttext", "text_logreg"),
    "HtFE-txt-4": ("fasttext", "text_logreg", "lstmnet", "bilstm"),
    "HtFE-txt-5-1": tuple(f"transformer_h8_l{n}" for n in (1, 2, 4, 8, 16)),
    "HtFE-txt-5-2": tuple(f"transformer_h{h}_l4" for h in (1, 2, 4, 8, 16)),
    "HtFE-txt-5-3": tuple(f"transformer_h{n}_l{n}" for n in (1, 2, 4, 8, 16)),
    "HtFE-txt-6": _TXT6,
    "MLPs": _amazon((), (500,), (1000, 500), (1000, 500, 200)),
    "MLP_1layer": _amazon((200,), (500,)),
    "MLP_layers": _amazon((500,), (1000, 500), (1000, 500, 200)),
    "HtFE-sen-2": _SEN8[:2],
    "HtFE-sen-3": _SEN8[:3],
    "HtFE-sen-5": (*_SEN8[:4], "htfllib_harcnn3"),
    "HtFE-sen-8": _SEN8,
}

#: families whose shared model (FML, FedKD, FedMRL) is not their first member: HtFLlib's
#: ``args.global_model``, ``FedAvgCNN`` with the first head (``BaseHeadSplit(args,
#: is_global=True)`` takes ``heads[0]``)
SHARED_MODELS: dict[str, str] = {
    "HtFE-img-8-HtC-img-4": htc_name("fedavgcnn", HTC_HEADS[0]),
    "Res34-HtC-img-4": htc_name("fedavgcnn", HTC_HEADS[0]),
}


def family_members(family: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The architectures of a family name, or of an explicit list (returned as it is)."""
    if isinstance(family, str):
        if family not in FAMILIES:
            raise ValueError(
                f"unknown model family {family!r}; known: {', '.join(FAMILIES)} "
                "(or give a list of architectures)"
            )
        return FAMILIES[family]
    return tuple(family)


def shared_member(family: str | list[str] | tuple[str, ...]) -> str:
    """The model HtFLlib shares in FML, FedKD and FedMRL for this family: its
    ``global_model`` where it names one, else the first member (``BaseHeadSplit(args, 0)``)."""
    if isinstance(family, str) and family in SHARED_MODELS:
        return SHARED_MODELS[family]
    return family_members(family)[0]


#: bytes per parameter while training: weights, gradients, SGD momentum, the upload's copy
TRAINING_BYTES_PER_PARAMETER = 16


def memory_problem(
    arch: str,
    device_class: str,
    feature_dim: int,
    input_shape: tuple[int, ...] | None = None,
) -> str | None:
    """Why ``arch`` cannot train on ``device_class`` (its parameters' training state exceeds
    the class's memory), or None. Counted on the meta device: nothing is allocated. The
    activations come on top, so passing this is necessary, not sufficient. Without an input
    shape, the modality's HtFLlib default: 3x32x32 images, 200 tokens (HtFLlib's ``max_len``;
    the vocabulary at its 32000 default), 9x1x128 sensor windows, 5000 Amazon features."""
    from htfl.devices import DEVICE_CLASSES
    from htfl.models.htfllib_har import HAR_ARCHITECTURES
    from htfl.models.htfllib_mlp import MLP_ARCHITECTURES
    from htfl.models.text import DEFAULT_MAX_LEN, TEXT_ARCHITECTURES
    from htfl.models.zoo import build_model, count_parameters

    if input_shape is None:
        input_shape = (
            (DEFAULT_MAX_LEN,)
            if arch in TEXT_ARCHITECTURES
            else (9, 1, 128)
            if arch in HAR_ARCHITECTURES
            else (AMAZON_FEATURES,)
            if arch in MLP_ARCHITECTURES
            else (3, 32, 32)
        )
    memory_mb = DEVICE_CLASSES[device_class].profile.memory_mb
    try:
        with torch.device("meta"):
            model = build_model(arch, input_shape, 10, feature_dim)
    except ValueError:
        return None  # not an image model: its size depends on the dataset's shape
    need_mb = count_parameters(model) * TRAINING_BYTES_PER_PARAMETER / 2**20
    if need_mb <= memory_mb:
        return None
    return (
        f"{arch} needs about {need_mb:,.0f} MB for its parameters' training state, more than "
        f"a {device_class} has ({memory_mb:,} MB)"
    )
