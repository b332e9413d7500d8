"""MobileNetV2 (Sandler et al., 2018) adapted to small images.

Built from the paper's Table 2: a 3x3 stem conv with 32 channels, seven groups of
inverted residual bottlenecks given as (expansion t, channels c, repeats n,
stride s), a 1x1 conv to 1280 channels, and global average pooling. Each
bottleneck is 1x1 expand (t * in channels, ReLU6) -> 3x3 depthwise (stride s,
ReLU6) -> 1x1 linear projection, with an identity shortcut when the stride is 1
and the channel count is unchanged. The width multiplier scales every channel
count (rounded to a multiple of 8) except that the last 1280 is never shrunk.

CIFAR-style strides: the stem has stride 1 and the second group (c=24) stride 1
instead of 2, so the network downsamples by 8 rather than 32 (32x32 -> 4x4 and
8x8 -> 1x1 before the pool). An adapter ``Linear(1280, d)`` + ReLU after the
pool emits ``d`` features.
"""

from __future__ import annotations

from torch import Tensor, nn

from htfl.models.base import SplitModel, check_feature_dim, image_shape, init_conv_bn

#: (expansion t, output channels c, repeats n, stride s) per group; paper Table 2
#: with the first two strides set to 1 for small inputs.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),  # paper: stride 2
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never losing > 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _conv_bn_relu6(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (3x3) -> linear project (1x1), residual if shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_conv_bn_relu6(in_channels, hidden, 1))
        layers += [
            _conv_bn_relu6(hidden, hidden, 3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV2Features(nn.Module):
    """Stem, inverted residual groups, 1x1 conv to 1280, pool, ``Linear(1280, d)`` + ReLU."""

    def __init__(self, in_channels: int, feature_dim: int, width_mult: float = 1.0) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        channels = make_divisible(STEM_CHANNELS * width_mult)
        last_channels = make_divisible(LAST_CHANNELS * max(1.0, width_mult))
        layers: list[nn.Module] = [_conv_bn_relu6(in_channels, channels, 3, stride=1)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            out_channels = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(channels, out_channels, s if i == 0 else 1, t))
                channels = out_channels
        layers.append(_conv_bn_relu6(channels, last_channels, 1))
        self.body = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.proj = nn.Sequential(nn.Linear(last_channels, feature_dim), nn.ReLU(inplace=True))
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.pool(self.body(x)))


def mobilenet_v2(
    input_shape: tuple[int, ...],
    num_classes: int,
    feature_dim: int = 512,
    width_mult: float = 1.0,
) -> SplitModel:
    """Build "mobilenet_v2" for any image shape ``(C, H, W)``.

    ``width_mult`` (paper: 0.35..1.4) trades accuracy for size; the zoo uses 1.0.
    """
    arch = "mobilenet_v2"
    c, h, w = image_shape(arch, input_shape)
    check_feature_dim(feature_dim)
    extractor = MobileNetV2Features(c, feature_dim, width_mult)
    return SplitModel(extractor, feature_dim, num_classes, arch, (c, h, w))
