"""ViT-B/16 and ViT-B/32 as torchvision builds them, with HtFLlib's head replacement.

HtFLlib's HtM-img-10 family (``system/main.py``) ends with
``torchvision.models.vit_b_16(image_size=32, ...)`` and ``vit_b_32(image_size=32, ...)``.
Its ``BaseHeadSplit`` (``system/flcore/trainmodel/models.py``) replaces the ViT's ``heads``
by ``nn.AdaptiveAvgPool1d(feature_dim)`` (the class token's 768 values pooled to ``d``) and,
for a ViT only, puts ``Linear(d, 768) - Tanh - Linear(768, num_classes)`` after it instead of a
linear head; so does this module (the head is passed to :class:`SplitModel`). The layers follow
torchvision's ``models/vision_transformer.py`` (patchify conv, class token, learned position
embedding, pre-norm encoder blocks with LayerNorm eps 1e-6, GELU MLP, final LayerNorm) with its
initialisation; torchvision itself does not import beside the CPU torch the devices run. The
parameter counts equal torchvision's published ones (tests/test_htfllib_models.py).

Methods that average or hand out the head (LG-FedAvg, FedGH, FedGen) cannot take this head, in
HtFLlib as here; the experiment's validation says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from htfl.models.base import IncompatibleInputError, SplitModel, check_feature_dim, image_shape

__all__ = ["OWN_HEAD_ARCHITECTURES", "VIT_ARCHITECTURES", "VIT_HIDDEN"]

#: ViT-B's width, depth, heads and MLP width (torchvision's vit_b_16 / vit_b_32)
VIT_HIDDEN, VIT_LAYERS, VIT_HEADS, VIT_MLP = 768, 12, 12, 3072
_LN_EPS = 1e-6


class MLPBlock(nn.Sequential):
    """Linear - GELU - Dropout - Linear - Dropout (torchvision's ``MLP``: indices 0 and 3)."""

    def __init__(self, dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim),
            nn.Dropout(dropout),
        )
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)


class EncoderBlock(nn.Module):
    """Pre-norm self-attention and MLP, each with a residual connection."""

    def __init__(self, heads: int, dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.self_attention = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.mlp = MLPBlock(dim, mlp_dim, dropout)

    def forward(self, inputs: Tensor) -> Tensor:
        x = self.ln_1(inputs)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x) + inputs
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, seq_length: int, layers: int, heads: int, dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, dim).normal_(std=0.02))
        self.dropout = nn.Dropout(0.0)
        self.layers = nn.Sequential(
            *(EncoderBlock(heads, dim, mlp_dim, 0.0) for _ in range(layers))
        )
        self.ln = nn.LayerNorm(dim, eps=_LN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class ViTFeatures(nn.Module):
    """torchvision's ``VisionTransformer`` up to the class token; ``heads`` pools it to ``d``."""

    def __init__(self, in_channels: int, image_size: int, patch: int, feature_dim: int) -> None:
        super().__init__()
        self.patch_size = patch
        self.conv_proj = nn.Conv2d(in_channels, VIT_HIDDEN, kernel_size=patch, stride=patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, VIT_HIDDEN))
        seq_length = (image_size // patch) ** 2 + 1
        self.encoder = Encoder(seq_length, VIT_LAYERS, VIT_HEADS, VIT_HIDDEN, VIT_MLP)
        self.heads = nn.AdaptiveAvgPool1d(feature_dim)  # HtFLlib's replacement of the head
        fan_in = in_channels * patch * patch
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        if self.conv_proj.bias is not None:
            nn.init.zeros_(self.conv_proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        x = self.conv_proj(x).flatten(2).permute(0, 2, 1)  # (n, patches, 768)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


def htfllib_vit_head(feature_dim: int, num_classes: int) -> nn.Sequential:
    """HtFLlib's head for a ViT: ``Linear(d, 768) - Tanh - Linear(768, num_classes)``."""
    return nn.Sequential(
        nn.Linear(feature_dim, VIT_HIDDEN), nn.Tanh(), nn.Linear(VIT_HIDDEN, num_classes)
    )


def _vit(arch: str, patch: int) -> Callable[..., SplitModel]:
    def build(input_shape: tuple[int, ...], num_classes: int, feature_dim: int = 512) -> SplitModel:
        c, h, w = image_shape(arch, input_shape, min_size=patch)
        if h != w or h % patch:
            raise IncompatibleInputError(
                arch, (c, h, w), f"needs a square image whose side is a multiple of {patch}"
            )
        check_feature_dim(feature_dim)
        features = ViTFeatures(c, h, patch, feature_dim)
        head = htfllib_vit_head(feature_dim, num_classes)
        return SplitModel(features, feature_dim, num_classes, arch, (c, h, w), head=head)

    build.__name__ = build.__qualname__ = arch
    build.__doc__ = f"torchvision's vit_b_{patch} for the input's size, HtFLlib's head."
    return build


#: name -> constructor, merged into :data:`htfl.models.ARCHITECTURES`
VIT_ARCHITECTURES: dict[str, Callable[..., SplitModel]] = {
    "tv_vit_b_16": _vit("tv_vit_b_16", 16),
    "tv_vit_b_32": _vit("tv_vit_b_32", 32),
}

#: architectures whose head is not the contract's Linear(d, C): a method that exchanges the
#: head (``Method.exchanges_head``) refuses them at validation
OWN_HEAD_ARCHITECTURES = frozenset(VIT_ARCHITECTURES)
