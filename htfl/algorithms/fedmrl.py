"""FedMRL (Yi et al., NeurIPS 2024): a small shared model with a low-dimensional feature, fused
with the private model's feature into Matryoshka representations.

Client: the shared model (``shared_arch`` with ``sub_feature_dim`` features, identical on every
client; the default is ``d // 4``, HtFLlib's 128 of 512) and the private extractor both read the
input; their features are concatenated and a personal projector (one linear layer, never
shared) maps them to a fused ``d``-dim representation. Its first ``sub_feature_dim`` dimensions
feed the shared model's head, all ``d`` feed the private head; the loss is the sum of the two
cross-entropies. Evaluation uses the private head on the fused representation, as HtFLlib does.
Upload: the shared model (extractor and head). Server: its sample-weighted average. Download:
the averaged shared model.

Differences from HtFLlib's ``clientmrl.py`` / ``servermrl.py``:

* HtFLlib builds the projector but never saves it after training, so it restarts from its
  initial weights every round; here it is the client's own persistent module, as the paper's
  "personalized representation projector".
* HtFLlib averages the shared models uniformly; we weight by sample counts (FedAvg-style).
  ``weighting = "clients"`` (the ``htfllib`` preset) is HtFLlib's.
* Gradients are clipped to norm 10, as HtFLlib does for FML and FedKD (its FedMRL has the line
  commented out): on the accuracy benchmark's split (SGD 0.05, momentum 0.9) one unclipped client
  diverged after ~20 rounds and the average carried its blown-up shared model to everyone.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from htfl.algorithms import checks
from htfl.algorithms.base import ClientSide, Method, Payload
from htfl.algorithms.shared import SharedModelServer, shared_model_bytes
from htfl.algorithms.state import load_module_payload, module_payload
from htfl.validation import table


@table
class FedMRLParams:
    sub_feature_dim: checks.Count = 0  # the shared model's (low) feature dimension; 0: d // 4
    shared_arch: checks.Architecture = "cnn4"
    #: the server's average of the shared models: by sample count (FedAvg) or plain (HtFLlib)
    weighting: Literal["samples", "clients"] = "samples"

    def sub_dim(self, feature_dim: int) -> int:
        """The shared feature dimension for a federation of ``feature_dim`` (HtFLlib: 128/512)."""
        return self.sub_feature_dim or max(1, feature_dim // 4)


class FedMRLClient(ClientSide):
    max_grad_norm = 10.0  # as FML and FedKD (HtFLlib has it commented out for FedMRL)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        d = self.model.feature_dim
        self.sub = sub = self.params.sub_dim(d)
        if sub > d:
            raise ValueError(f"fedmrl: sub_feature_dim {sub} exceeds the feature dimension {d}")
        self.shared = self.add_module(self.build_shared_model(self.params.shared_arch, sub))
        self.projector = self.add_module(nn.Linear(sub + d, d))

    def receive(self, download: Payload) -> None:
        load_module_payload(self.shared, download)

    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(torch.cat([self.shared.features(x), self.model.features(x)], 1))

    def training_loss(self, x, y):
        fused = self._fused(x)
        sub = self.sub
        loss_private = F.cross_entropy(self.model.head(fused), y)
        loss_shared = F.cross_entropy(self.shared.head(fused[:, :sub]), y)
        return loss_private + loss_shared

    def predict(self, x):
        return self.model.head(self._fused(x))

    eval_logits = predict

    def upload(self) -> Payload:
        return module_payload(self.shared)


def declared_upload_bytes(params, num_classes, feature_dim, model_bytes, input_shape=None) -> int:
    sub = params.sub_dim(feature_dim)
    return shared_model_bytes(params.shared_arch, input_shape, num_classes, sub)


METHOD = Method(
    name="fedmrl",
    params=FedMRLParams,
    client=FedMRLClient,
    server=SharedModelServer,
    declared_upload_bytes=declared_upload_bytes,
    summary="small shared model, Matryoshka fusion with a personal projector",
)
