"""HARCNN: a small 1-D CNN for inertial sensor windows (UCI-HAR style).

Input is ``(B, channels, length)``; UCI-HAR gives 9 channels (body/total
acceleration and gyroscope, x/y/z) over 128-sample windows. Two temporal conv
blocks (kernel 9, 32 then 64 filters, ReLU, max-pool 2) are followed by an
adaptive average pool to a fixed number of time steps, then two fully connected
layers (1024 units, then ``d``) with ReLU. Convs are "same"-padded so any window
of at least 4 samples works; the adaptive pool keeps the fc input size fixed.
"""

from __future__ import annotations

from torch import Tensor, nn

from htfl.models.base import SplitModel, check_feature_dim, init_conv_bn, signal_shape

#: Time steps after the adaptive pool (128-sample windows give 32 before it).
MAX_POOLED_LENGTH = 16
#: Two max-pools of 2 need at least 4 samples.
MIN_LENGTH = 4
HIDDEN_UNITS = 1024


class HARCNNFeatures(nn.Module):
    """conv1d(32,9)-relu-pool, conv1d(64,9)-relu-pool, adaptive pool, fc(1024)-relu, fc(d)-relu."""

    def __init__(self, in_channels: int, feature_dim: int, pooled_length: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(in_channels, 32, kernel_size=9, padding=4),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(2),
            nn.Conv1d(32, 64, kernel_size=9, padding=4),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(2),
        )
        self.pool = nn.AdaptiveAvgPool1d(pooled_length)
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * pooled_length, HIDDEN_UNITS),
            nn.ReLU(inplace=True),
            nn.Linear(HIDDEN_UNITS, feature_dim),
            nn.ReLU(inplace=True),
        )
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.conv(x)))


def harcnn(input_shape: tuple[int, ...], num_classes: int, feature_dim: int = 512) -> SplitModel:
    """Build "harcnn" for a signal shape ``(channels, length)``, e.g. ``(9, 128)``.

    The pooled length is ``min(16, length // 4)`` so short windows are not upsampled.
    """
    arch = "harcnn"
    c, length = signal_shape(arch, input_shape, min_length=MIN_LENGTH)
    check_feature_dim(feature_dim)
    pooled = min(MAX_POOLED_LENGTH, length // 4)
    return SplitModel(
        HARCNNFeatures(c, feature_dim, pooled), feature_dim, num_classes, arch, (c, length)
    )
