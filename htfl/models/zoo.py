"""Name -> constructor registry for every architecture a client may run.

Clients in a heterogeneous federation pick an architecture by name (from config
or by device capability); :func:`build_model` turns the name plus the dataset's
per-sample input shape into a :class:`~htfl.models.base.SplitModel` whose
feature dimension ``d`` matches the rest of the federation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from htfl.models.base import SplitModel
from htfl.models.cnn import cnn4
from htfl.models.harcnn import harcnn
from htfl.models.htfllib import HTFLLIB_ARCHITECTURES
from htfl.models.htfllib_har import HAR_ARCHITECTURES
from htfl.models.htfllib_heads import HTC_ARCHITECTURES
from htfl.models.htfllib_mlp import MLP_ARCHITECTURES
from htfl.models.mobilenet import mobilenet_v2
from htfl.models.resnet import (
    resnet4,
    resnet6,
    resnet8,
    resnet10,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
)
from htfl.models.text import TEXT_ARCHITECTURES
from htfl.models.vit import OWN_HEAD_ARCHITECTURES as VIT_HEAD_ARCHITECTURES
from htfl.models.vit import VIT_ARCHITECTURES

#: Every constructor takes ``(input_shape, num_classes, feature_dim=512)`` and
#: raises ``ValueError`` for an input shape it cannot process.
ARCHITECTURES: dict[str, Callable[..., SplitModel]] = {
    "cnn4": cnn4,
    "resnet4": resnet4,
    "resnet6": resnet6,
    "resnet8": resnet8,
    "resnet10": resnet10,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet152": resnet152,
    "mobilenet_v2": mobilenet_v2,
    "harcnn": harcnn,
    # HtFLlib's family members (torchvision's layer structure, HtFLlib's head replacement)
    **HTFLLIB_ARCHITECTURES,
    **VIT_ARCHITECTURES,
    **TEXT_ARCHITECTURES,
    **HAR_ARCHITECTURES,
    **MLP_ARCHITECTURES,
    **HTC_ARCHITECTURES,
}

#: architectures whose head is not the contract's Linear(d, C) (HtFLlib's ViT head, its
#: heterogeneous heads): a method that exchanges the head (``Method.exchanges_head``) refuses
#: them at validation
OWN_HEAD_ARCHITECTURES = VIT_HEAD_ARCHITECTURES | frozenset(HTC_ARCHITECTURES)


class UnknownArchitectureError(ValueError):
    """Raised for an architecture name that is not in :data:`ARCHITECTURES`."""

    def __init__(self, arch: object) -> None:
        super().__init__(
            f"unknown architecture {arch!r}; known architectures: {', '.join(ARCHITECTURES)}"
        )
        self.arch = arch


def build_model(
    arch: str, input_shape: Sequence[int], num_classes: int, feature_dim: int = 512
) -> SplitModel:
    """Build ``arch`` for per-sample ``input_shape`` (no batch dim).

    Examples of ``input_shape``: ``(1, 8, 8)`` digits, ``(3, 32, 32)`` CIFAR,
    ``(9, 128)`` UCI-HAR. Raises :class:`UnknownArchitectureError` for an unknown
    name and ``ValueError`` (naming the arch and shape) for an incompatible shape.
    """
    try:
        constructor = ARCHITECTURES[arch]
    except (KeyError, TypeError):
        raise UnknownArchitectureError(arch) from None
    return constructor(tuple(int(s) for s in input_shape), num_classes, feature_dim)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
