"""HtFLlib's AmazonMLP (its MLPs, MLP_1layer and MLP_layers families), with its head replacement.

Written from HtFLlib's ``system/flcore/trainmodel/models.py`` (``AmazonMLP(feature_dim=[...])``):
an ``encoder`` of ``Linear``-``ReLU`` pairs from the 5000 review features (PFLlib's
``generate_AmazonReview.py`` keeps the first 5000 of each review's bag-of-words vector) through
the listed hidden widths to 100 outputs, a ``ReLU`` after every one of them, the last included;
then ``fc = Linear(100, 2)``. ``BaseHeadSplit`` replaces that ``fc`` by
``nn.AdaptiveAvgPool1d(feature_dim)`` (100 values pooled, i.e. stretched, to ``d``) and puts
``Linear(feature_dim, num_classes)`` after it. PyTorch's default initialisation, as HtFLlib's.

The one difference: HtFLlib fixes the input at 5000 features; here it is the sample's length,
so the same members run on another feature vector (and at toy size in the tests).

Names: ``amazon_mlp`` (no hidden layer: ``Linear(n, 100)``), ``amazon_mlp_200``,
``amazon_mlp_500``, ``amazon_mlp_1000_500``, ``amazon_mlp_1000_500_200``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from htfl.models.base import IncompatibleInputError, SplitModel, check_feature_dim

__all__ = ["AMAZON_FEATURES", "MLP_ARCHITECTURES", "amazon_name"]

#: HtFLlib's AmazonMLP input (``in_features``) and encoder output (``out_features``)
AMAZON_FEATURES, ENCODER_OUT = 5000, 100


def linear_relu_stack(widths: tuple[int, ...], *, inplace: bool = False) -> nn.Sequential:
    """HtFLlib's Linear-ReLU pairs through ``widths`` (its MLP encoders and its ``Head``)."""
    layers: list[nn.Module] = []
    for i, o in zip(widths, widths[1:], strict=False):
        layers += [nn.Linear(i, o), nn.ReLU(inplace=inplace)]
    return nn.Sequential(*layers)


class AmazonMLPFeatures(nn.Module):
    """``encoder`` (Linear-ReLU pairs to 100), then ``fc``: the pool to ``d``."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], feature_dim: int) -> None:
        super().__init__()
        self.encoder = linear_relu_stack((in_features, *hidden, ENCODER_OUT))
        self.fc = nn.AdaptiveAvgPool1d(feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.encoder(x.flatten(1)))


def _mlp(arch: str, hidden: tuple[int, ...]) -> Callable[..., SplitModel]:
    def build(input_shape: tuple[int, ...], num_classes: int, feature_dim: int = 512) -> SplitModel:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 1 or shape[0] < 1:
            raise IncompatibleInputError(
                arch, shape, f"expects a feature vector (n,), e.g. ({AMAZON_FEATURES},)"
            )
        check_feature_dim(feature_dim)
        features = AmazonMLPFeatures(shape[0], hidden, feature_dim)
        return SplitModel(features, feature_dim, num_classes, arch, shape)

    build.__name__ = build.__qualname__ = arch
    build.__doc__ = f"HtFLlib's AmazonMLP(feature_dim={list(hidden)})."
    return build


#: HtFLlib's AmazonMLP hidden widths in its three families (system/main.py)
_HIDDEN: tuple[tuple[int, ...], ...] = ((), (200,), (500,), (1000, 500), (1000, 500, 200))


def amazon_name(hidden: tuple[int, ...]) -> str:
    """``amazon_mlp`` and the hidden widths: ``amazon_mlp_1000_500``."""
    return "amazon_mlp" + "".join(f"_{w}" for w in hidden)


#: name -> constructor, merged into :data:`htfl.models.ARCHITECTURES`
MLP_ARCHITECTURES: dict[str, Callable[..., SplitModel]] = {
    amazon_name(hidden): _mlp(amazon_name(hidden), hidden) for hidden in _HIDDEN
}
