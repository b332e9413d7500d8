"""The 4-layer CNN used as the small model in FedAvg-style experiments ("cnn4").

Two 5x5 conv layers (32 and 64 filters), each followed by ReLU and 2x2 max-pool,
then a fully connected layer to ``d`` units with ReLU; the classifier head is the
fourth layer. Unlike the original (no padding, so it needs >= 28x28 inputs), the
convs use padding 2 so spatial size is only halved by the pools, and an adaptive
average pool fixes the grid fed to the fc layer. That lets the same design run
on 8x8 digits as well as 28x28 / 32x32 images.
"""

from __future__ import annotations

from torch import Tensor, nn

from htfl.models.base import SplitModel, check_feature_dim, image_shape

#: Largest grid the adaptive pool produces (4x4x64 = 1024 inputs to the fc).
MAX_POOLED_SIZE = 4
#: Each max-pool halves the spatial size; two of them need at least 4 pixels.
MIN_INPUT_SIZE = 4


class CNN4Features(nn.Module):
    """conv(32,5)-relu-pool, conv(64,5)-relu-pool, adaptive pool, fc(d)-relu."""

    def __init__(self, in_channels: int, feature_dim: int, pooled_hw: tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.pool = nn.AdaptiveAvgPool2d(pooled_hw)
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * pooled_hw[0] * pooled_hw[1], feature_dim),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.conv(x)))


def cnn4(input_shape: tuple[int, ...], num_classes: int, feature_dim: int = 512) -> SplitModel:
    """Build "cnn4" for an image shape ``(C, H, W)`` with ``H, W >= 4``.

    The pooled grid is ``min(4, H // 4) x min(4, W // 4)``: on 8x8 digits that is
    2x2 (nothing is upsampled, the fc stays small), on 28x28 / 32x32 it is 4x4.
    """
    arch = "cnn4"
    c, h, w = image_shape(arch, input_shape, min_size=MIN_INPUT_SIZE)
    check_feature_dim(feature_dim)
    pooled = (min(MAX_POOLED_SIZE, h // 4), min(MAX_POOLED_SIZE, w // 4))
    return SplitModel(
        CNN4Features(c, feature_dim, pooled), feature_dim, num_classes, arch, (c, h, w)
    )
