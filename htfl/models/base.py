"""The split-model contract every architecture in the zoo follows.

Heterogeneous FL methods never exchange whole models (clients run different
architectures), they exchange what the architectures have in common: a feature
space of fixed dimension ``d`` (prototype methods such as FedProto send per-class
mean features) and/or a linear head ``d -> num_classes`` (head-sharing methods
such as FedGH/LG-FedAvg). :class:`SplitModel` makes that split explicit so the
algorithms can reach both halves without knowing the architecture.
"""

from __future__ import annotations

from torch import Tensor, nn


class SplitModel(nn.Module):
    """A model cut into ``feature_extractor`` (input -> ``[B, d]``) and ``head``.

    Attributes:
        feature_extractor: Maps a batch of inputs to ``[B, feature_dim]`` features.
        head: ``nn.Linear(feature_dim, num_classes)`` unless the family keeps its own; the
            only part that sees labels.
        feature_dim: ``d``, identical across all clients of a heterogeneous federation.
        num_classes: Number of output logits.
        arch: Zoo name the model was built from (e.g. ``"resnet8"``), for logging
            and for grouping clients with identical architectures.
        input_shape: Per-sample input shape (no batch dim) the model was built for.
        head: A classifier other than ``Linear(feature_dim, num_classes)`` (it must map
            ``[B, feature_dim]`` to ``[B, num_classes]``); None for the linear head.
    """

    def __init__(
        self,
        feature_extractor: nn.Module,
        feature_dim: int,
        num_classes: int,
        arch: str,
        input_shape: tuple[int, ...] = (),
        head: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if feature_dim < 1:
            raise ValueError(f"feature_dim must be >= 1, got {feature_dim}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.feature_extractor = feature_extractor
        # The head is built here, not by the family, so its shape is guaranteed; a family
        # that keeps a head of its own (HtFLlib's ViT: Linear-Tanh-Linear) passes it in, and
        # methods that exchange the head refuse it (see :func:`has_linear_head`).
        self.head: nn.Module = nn.Linear(feature_dim, num_classes) if head is None else head
        self.feature_dim = int(feature_dim)
        self.num_classes = int(num_classes)
        self.arch = arch
        self.input_shape = tuple(int(s) for s in input_shape)

    def features(self, x: Tensor) -> Tensor:
        """Return the ``[B, feature_dim]`` representation (what prototypes are built from)."""
        return self.feature_extractor(x)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``[B, num_classes]`` logits: ``head(features(x))``."""
        return self.head(self.features(x))

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(features, logits)`` from one pass, for losses that need both."""
        feats = self.features(x)
        return feats, self.head(feats)

    def extra_repr(self) -> str:
        return (
            f"arch={self.arch!r}, input_shape={self.input_shape}, "
            f"feature_dim={self.feature_dim}, num_classes={self.num_classes}"
        )


def has_linear_head(model: SplitModel) -> bool:
    """Whether the head is the contract's ``Linear(feature_dim, num_classes)``: methods that
    average or hand out heads (LG-FedAvg, FedGH, FedGen) need every client's to be one."""
    head = model.head
    return (
        isinstance(head, nn.Linear)
        and head.in_features == model.feature_dim
        and head.out_features == model.num_classes
    )


def check_feature_dim(feature_dim: int) -> None:
    """Reject non-positive feature dims before any layer is allocated."""
    if not isinstance(feature_dim, int) or isinstance(feature_dim, bool) or feature_dim < 1:
        raise ValueError(f"feature_dim must be a positive int, got {feature_dim!r}")


def init_conv_bn(module: nn.Module) -> None:
    """He-normal init for convs (as in the ResNet/MobileNetV2 papers), unit BN.

    ``fan_in`` mode keeps the forward signal scale even before BN statistics exist
    (fresh model in eval mode). ``fan_out`` would be wrong for depthwise convs:
    PyTorch computes their fan-out as ``channels * k * k`` (groups are ignored),
    which shrinks each MobileNetV2 block's output ~100x and collapses the features.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class IncompatibleInputError(ValueError):
    """An architecture was asked to take an input shape it cannot process."""

    def __init__(self, arch: str, input_shape: tuple[int, ...], reason: str) -> None:
        super().__init__(f"architecture {arch!r} cannot take input shape {input_shape}: {reason}")
        self.arch = arch
        self.input_shape = input_shape
        self.reason = reason


def image_shape(arch: str, input_shape: tuple[int, ...], min_size: int = 1) -> tuple[int, int, int]:
    """Validate a per-sample image shape ``(C, H, W)`` and return it as ints."""
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise IncompatibleInputError(
            arch, shape, f"expects an image shape (C, H, W), got {len(shape)} dims"
        )
    c, h, w = (int(s) for s in shape)
    if c < 1:
        raise IncompatibleInputError(arch, shape, "needs at least one channel")
    if h < min_size or w < min_size:
        raise IncompatibleInputError(
            arch, shape, f"needs height and width >= {min_size}, got {h}x{w}"
        )
    return c, h, w


def signal_shape(arch: str, input_shape: tuple[int, ...], min_length: int = 1) -> tuple[int, int]:
    """Validate a per-sample 1-D signal shape ``(C, L)`` and return it as ints."""
    shape = tuple(input_shape)
    if len(shape) != 2:
        raise IncompatibleInputError(
            arch, shape, f"expects a 1-D signal shape (channels, length), got {len(shape)} dims"
        )
    c, length = (int(s) for s in shape)
    if c < 1:
        raise IncompatibleInputError(arch, shape, "needs at least one channel")
    if length < min_length:
        raise IncompatibleInputError(arch, shape, f"needs length >= {min_length}, got {length}")
    return c, length
