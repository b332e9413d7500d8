"""HtFLlib's sensor models (its HtFE-sen families): HARCNN, HARCNN1, HARCNN3 at strides 1-3.

Written from HtFLlib's ``system/flcore/trainmodel/models.py`` (after
github.com/jindongwang/Deep-learning-activity-recognition): 2-D convolutions with ``(1, k)``
kernels over a ``(channels, 1, length)`` window (HtFLlib's HAR folders store UCI-HAR as
``9 x 1 x 128``), each followed by ReLU and a ``(1, 2)`` max-pool of stride 2. HARCNN has two
convs (32, 64 filters, k 9), HARCNN1 one (32, k 9), HARCNN3 three (32, 64, 128, k 5); the conv
stride is the family's ``stride``. HtFLlib's head replacement turns the whole ``fc`` stack
(``dim_hidden -> 1024 -> 512 -> C``) into ``nn.AdaptiveAvgPool1d(feature_dim)`` over the
flattened conv output, so ``dim_hidden`` plays no part and the members differ only in their
convolutions. PyTorch's default initialisation, as HtFLlib's.

htfl's own ``harcnn`` (``htfl/models/harcnn.py``) is a different, 1-D design; these are for
running HtFLlib's families. A ``(channels, length)`` shape is taken as ``(channels, 1, length)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from htfl.models.base import IncompatibleInputError, SplitModel, check_feature_dim

__all__ = ["HAR_ARCHITECTURES"]

#: member -> (filters per conv, kernel width), HtFLlib's HARCNN / HARCNN1 / HARCNN3
_DESIGNS: dict[str, tuple[tuple[int, ...], int]] = {
    "harcnn": ((32, 64), 9),
    "harcnn1": ((32,), 9),
    "harcnn3": ((32, 64, 128), 5),
}


def _conv_length(length: int, kernel: int, stride: int) -> int:
    """Length after one conv (no padding) and the (1, 2) max-pool of stride 2."""
    return ((length - kernel) // stride + 1 - 2) // 2 + 1


class HtFLlibHARFeatures(nn.Module):
    """The conv blocks ``conv1``.. as HtFLlib names them, flatten, pool to ``d`` (``fc``)."""

    def __init__(
        self, in_channels: int, filters: tuple[int, ...], kernel: int, stride: int, dim: int
    ) -> None:
        super().__init__()
        self.convs = [f"conv{i + 1}" for i in range(len(filters))]
        channels = in_channels
        for name, out in zip(self.convs, filters, strict=True):
            block = nn.Sequential(
                nn.Conv2d(channels, out, kernel_size=(1, kernel), stride=stride),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=(1, 2), stride=2),
            )
            setattr(self, name, block)
            channels = out
        self.fc = nn.AdaptiveAvgPool1d(dim)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:  # (B, C, L) -> (B, C, 1, L)
            x = x.unsqueeze(2)
        for name in self.convs:
            x = getattr(self, name)(x)
        return self.fc(torch.flatten(x, 1))


def _har(arch: str, design: str, stride: int) -> Callable[..., SplitModel]:
    filters, kernel = _DESIGNS[design]

    def build(input_shape: tuple[int, ...], num_classes: int, feature_dim: int = 512) -> SplitModel:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) == 2:
            shape = (shape[0], 1, shape[1])
        if len(shape) != 3 or shape[1] != 1 or shape[0] < 1:
            raise IncompatibleInputError(
                arch, tuple(input_shape), "expects a sensor window (channels, 1, length)"
            )
        length = shape[2]
        for _ in filters:
            length = _conv_length(length, kernel, stride)
            if length < 1:
                raise IncompatibleInputError(
                    arch, shape, f"a window of {shape[2]} samples is too short for its convs"
                )
        check_feature_dim(feature_dim)
        features = HtFLlibHARFeatures(shape[0], filters, kernel, stride, feature_dim)
        return SplitModel(features, feature_dim, num_classes, arch, shape)

    build.__name__ = build.__qualname__ = arch
    build.__doc__ = f"HtFLlib's {design.upper()} with conv stride {stride}."
    return build


def _name(design: str, stride: int) -> str:
    return f"htfllib_{design}" + (f"_s{stride}" if stride > 1 else "")


#: name -> constructor, merged into :data:`htfl.models.ARCHITECTURES`
HAR_ARCHITECTURES: dict[str, Callable[..., SplitModel]] = {
    _name(design, stride): _har(_name(design, stride), design, stride)
    for design in _DESIGNS
    for stride in (1, 2, 3)
    if (design, stride) != ("harcnn3", 3)  # not in HtFLlib's families; too short at 128
}
