"""HtFLlib's heterogeneous heads (its HtFE-img-8-HtC-img-4 and Res34-HtC-img-4 families).

In those families (HtFLlib ``system/main.py``) client ``i`` takes extractor
``models[i % len(models)]`` and head ``heads[i % len(heads)]``, where each head is HtFLlib's
``Head(hidden_dims=[512, ...], num_classes)`` (``system/flcore/trainmodel/models.py``): a
``Linear``-``ReLU(inplace=True)`` pair per step of ``[512, ..., num_classes]``, so even the
logits leave through a ReLU. The four heads are ``[512]`` (``Linear(512, C)``-ReLU),
``[512, 512]``, ``[512, 256]`` and ``[512, 128]`` (a hidden layer, then ``Linear(h, C)``-ReLU).

A member here is one extractor with one head, named ``<extractor>_htc`` plus the hidden width
(``tv_resnet34_htc256``: torchvision's ResNet34, pooled to ``d``, then ``Linear(d, 256)``-ReLU-
``Linear(256, C)``-ReLU); :mod:`htfl.models.htfllib` lists the pairs client ``i`` gets, which
repeat after ``lcm(len(models), len(heads))`` clients. The extractors are the zoo's HtFLlib
members, unchanged. The one difference: HtFLlib's heads take 512 inputs whatever
``--feature_dim`` says (another value fails there); here the first width is the model's ``d``,
so at HtFLlib's ``d = 512`` the layers are the same.

Methods that average or hand out the head (LG-FedAvg, FedGH, FedGen) cannot take these heads,
in HtFLlib as here; the experiment's validation says so.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from htfl.models.base import IncompatibleInputError, SplitModel
from htfl.models.htfllib import FAMILIES, HTC_HEADS, HTFLLIB_ARCHITECTURES, IMG8, htc_name
from htfl.models.htfllib_mlp import linear_relu_stack

__all__ = ["HTC_ARCHITECTURES", "HtFLlibHead"]


class HtFLlibHead(nn.Module):
    """HtFLlib's ``Head``: ``fc`` = Linear-ReLU pairs through ``(d, *hidden, num_classes)``."""

    def __init__(self, feature_dim: int, hidden: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.fc = linear_relu_stack((feature_dim, *hidden, num_classes), inplace=True)

    def forward(self, rep: Tensor) -> Tensor:
        return self.fc(rep)


def _with_head(base: str, hidden: tuple[int, ...]) -> Callable[..., SplitModel]:
    arch = htc_name(base, hidden)

    def build(input_shape: tuple[int, ...], num_classes: int, feature_dim: int = 512) -> SplitModel:
        try:
            model = HTFLLIB_ARCHITECTURES[base](input_shape, num_classes, feature_dim)
        except IncompatibleInputError as err:  # named as the member the experiment gave
            raise IncompatibleInputError(arch, err.input_shape, err.reason) from None
        head = HtFLlibHead(feature_dim, hidden, num_classes)
        return SplitModel(
            model.feature_extractor, feature_dim, num_classes, arch, model.input_shape, head=head
        )

    build.__name__ = build.__qualname__ = arch
    widths = ", ".join(str(w) for w in (512, *hidden))
    build.__doc__ = f"HtFLlib's {base} with its Head(hidden_dims=[{widths}])."
    return build


_IN_FAMILIES = {arch for members in FAMILIES.values() for arch in members}

#: name -> constructor, merged into :data:`htfl.models.ARCHITECTURES`: the extractor-head
#: pairs HtFLlib's HtC families give their clients
HTC_ARCHITECTURES: dict[str, Callable[..., SplitModel]] = {
    htc_name(base, hidden): _with_head(base, hidden)
    for base in IMG8
    for hidden in HTC_HEADS
    if htc_name(base, hidden) in _IN_FAMILIES
}
