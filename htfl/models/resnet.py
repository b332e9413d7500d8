"""CIFAR-style residual networks (He et al., 2016), from 4 to 152 layers.

Stem: one 3x3 conv (stride 1) + BN + ReLU, no max-pool, so small images (8x8
digits, 32x32 CIFAR) are not shrunk before the residual stages. Stage ``i`` has
width ``64 * 2**i`` and stride 1 for the first stage, 2 for the others; blocks
use a 1x1 conv + BN projection shortcut when the shape changes.

Depth scheme (the number in the name counts weighted layers on the path from
input to logits: the stem conv, every conv in the residual branches, and the
final fc, i.e. the classifier head; projection shortcuts are not counted):

============  ==========  ============  ==================================
name          block       blocks/stage  depth
============  ==========  ============  ==================================
resnet4       BasicBlock  [1]           1 + 2*1 + 1
resnet6       BasicBlock  [1, 1]        1 + 2*2 + 1
resnet8       BasicBlock  [1, 1, 1]     1 + 2*3 + 1
resnet10      BasicBlock  [1, 1, 1, 1]  1 + 2*4 + 1
resnet18      BasicBlock  [2, 2, 2, 2]  1 + 2*8 + 1
resnet34      BasicBlock  [3, 4, 6, 3]  1 + 2*16 + 1
resnet50      Bottleneck  [3, 4, 6, 3]  1 + 3*16 + 1
resnet101     Bottleneck  [3, 4, 23, 3] 1 + 3*33 + 1
resnet152     Bottleneck  [3, 8, 36, 3] 1 + 3*50 + 1
============  ==========  ============  ==================================

After the last stage an adaptive average pool and an adapter ``Linear(C, d)`` +
ReLU make every depth emit exactly ``d`` features (``C`` is 64..512 for basic
blocks, 2048 for bottlenecks). The adapter is part of the feature extractor and,
like the shortcut projections, is not counted in the name.

Init: He-normal convs; from resnet18 up, the last BN scale in every residual branch
set to 0 so each block starts out as its shortcut (Goyal et al., 2017). The shallow
nets keep it at 1, as torchvision and HtFLlib do by default: zeroed, resnet4's single
block starts as the identity and, at HtFLlib's settings (lr 0.01, no momentum, 3x32x32),
it never gets past predicting the majority class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from htfl.models.base import SplitModel, check_feature_dim, image_shape, init_conv_bn

STAGE_WIDTHS: tuple[int, ...] = (64, 128, 256, 512)
#: nets with more residual blocks than this start each block as its shortcut (resnet18 up)
ZERO_INIT_MIN_BLOCKS = 4


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.residual(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride), 1x1 expand by 4, plus shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.residual(x) + self.shortcut(x))


class ResNetFeatures(nn.Module):
    """Stem, residual stages, global average pool, ``Linear(C, d)`` + ReLU."""

    def __init__(
        self,
        in_channels: int,
        block: type[BasicBlock] | type[Bottleneck],
        blocks_per_stage: Sequence[int],
        feature_dim: int,
    ) -> None:
        super().__init__()
        if not 1 <= len(blocks_per_stage) <= len(STAGE_WIDTHS):
            raise ValueError(f"need 1..{len(STAGE_WIDTHS)} stages, got {list(blocks_per_stage)}")
        stem_width = STAGE_WIDTHS[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_width, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        channels = stem_width
        for i, (width, n_blocks) in enumerate(
            zip(STAGE_WIDTHS[: len(blocks_per_stage)], blocks_per_stage, strict=True)
        ):
            layers: list[nn.Module] = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(block(channels, width, stride))
                channels = width * block.expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.proj = nn.Sequential(nn.Linear(channels, feature_dim), nn.ReLU(inplace=True))
        self.out_channels = channels
        init_conv_bn(self)
        # Zero the last BN scale of every residual branch (Goyal et al., 2017) so each
        # block starts as (close to) its shortcut. Without it a fresh resnet152 in eval
        # mode, where BN is still the identity, emits features of order 1e8. Only deep
        # nets need it: in resnet4..10 it leaves the stem alone to carry the signal, and
        # resnet4 at lr 0.01 without momentum then settles on the majority class.
        for m in self.stages.modules() if sum(blocks_per_stage) > ZERO_INIT_MIN_BLOCKS else ():
            if isinstance(m, BasicBlock | Bottleneck):
                last_bn = m.residual[-1]
                assert isinstance(last_bn, nn.BatchNorm2d)
                nn.init.zeros_(last_bn.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.pool(self.stages(self.stem(x))))


#: name -> (block type, blocks per stage); see the module docstring for the scheme.
RESNET_CONFIGS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]] = {
    "resnet4": (BasicBlock, (1,)),
    "resnet6": (BasicBlock, (1, 1)),
    "resnet8": (BasicBlock, (1, 1, 1)),
    "resnet10": (BasicBlock, (1, 1, 1, 1)),
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
    "resnet152": (Bottleneck, (3, 8, 36, 3)),
}


def resnet(
    arch: str, input_shape: tuple[int, ...], num_classes: int, feature_dim: int = 512
) -> SplitModel:
    """Build the ResNet named ``arch`` (a key of :data:`RESNET_CONFIGS`).

    Any ``(C, H, W)`` with ``H, W >= 1`` works: stride-2 3x3 convs with padding 1
    never shrink a side below 1. Note BatchNorm in training mode needs more than
    one value per channel, so a batch of 1 fails once the map is 1x1.
    """
    if arch not in RESNET_CONFIGS:
        raise ValueError(f"unknown ResNet {arch!r}; known: {', '.join(RESNET_CONFIGS)}")
    c, h, w = image_shape(arch, input_shape)
    check_feature_dim(feature_dim)
    block, blocks = RESNET_CONFIGS[arch]
    extractor = ResNetFeatures(c, block, blocks, feature_dim)
    return SplitModel(extractor, feature_dim, num_classes, arch, (c, h, w))


def _factory(arch: str) -> Callable[..., SplitModel]:
    def build(input_shape: tuple[int, ...], num_classes: int, feature_dim: int = 512) -> SplitModel:
        return resnet(arch, input_shape, num_classes, feature_dim)

    build.__name__ = arch
    build.__qualname__ = arch
    build.__doc__ = f"Build {arch!r}; see :func:`resnet`."
    return build


resnet4 = _factory("resnet4")
resnet6 = _factory("resnet6")
resnet8 = _factory("resnet8")
resnet10 = _factory("resnet10")
resnet18 = _factory("resnet18")
resnet34 = _factory("resnet34")
resnet50 = _factory("resnet50")
resnet101 = _factory("resnet101")
resnet152 = _factory("resnet152")
