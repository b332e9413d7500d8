"""FedProto (Tan et al., AAAI 2022): clients share class prototypes, not models.

Local loss: cross-entropy + lambda * ||f(x) - P_y||^2 to the global prototype of the label.
Server: per class, the sample-weighted average of the client prototypes. Inference (as in
HtFLlib) by the nearest global prototype once one exists.

Three choices where HtFLlib's ``clientproto.py`` / ``serverproto.py`` differ, each a parameter
(the default first; the ``htfllib`` preset selects HtFLlib's):

* ``weighting``: ``"samples"`` weights each client's prototype by its sample count (the
  paper's eq. 6); ``"clients"`` is HtFLlib's plain mean over the clients holding the class.
* ``prototypes``: ``"after_training"`` computes a client's prototypes with the trained model
  in eval mode over its training set; ``"during_training"`` is HtFLlib's: the mean of the
  features seen during local training (train mode, every batch of every epoch).
* ``mse_over`` (also FedTGP's): ``"known"`` averages the prototype MSE over the rows whose
  class has a global prototype; ``"all"`` is HtFLlib's ``MSELoss`` over the whole batch, rows
  without a prototype counting as zero (a weaker pull when few classes are known).
"""

from __future__ import annotations

from typing import Literal

import torch

from htfl.algorithms import checks, prototypes
from htfl.algorithms.base import (
    ClientSide,
    Method,
    Payload,
    ServerSide,
    Upload,
    mse_to_prototypes,
    nearest_prototype_scores,
)
from htfl.validation import table


def mse_over_batch(
    features: torch.Tensor, y: torch.Tensor, protos: torch.Tensor, present: torch.Tensor
) -> torch.Tensor | None:
    """HtFLlib's prototype term: ``MSELoss`` over every row and dimension of the batch, a row
    whose class has no global prototype contributing zero (its target is itself)."""
    mask = present[y] > 0
    if not bool(mask.any()):
        return None
    diff = (features - protos[y]) * mask.unsqueeze(1).to(features.dtype)
    return diff.pow(2).mean()


@table
class FedProtoParams:
    lamda: checks.NonNegative = 1.0
    weighting: Literal["samples", "clients"] = "samples"
    prototypes: Literal["after_training", "during_training"] = "after_training"
    mse_over: Literal["known", "all"] = "known"


class PrototypeClient(ClientSide):
    """Client side shared by prototype methods: regularise towards, and predict by, protos."""

    global_protos: tuple[torch.Tensor, torch.Tensor] | None = None

    def receive(self, download: Payload) -> None:
        protos = prototypes.as_tensors(download)
        if protos is not None:
            protos = (self.on_device(protos[0]), self.on_device(protos[1]))
        self.global_protos = protos

    _sums: torch.Tensor | None = None
    _counts: torch.Tensor | None = None
    _collected_round = -1

    def extra_loss(self, features, logits, y):
        if getattr(self.params, "prototypes", "after_training") == "during_training":
            self._collect(features, y)
        if self.global_protos is None or self.params.lamda == 0:
            return None
        if getattr(self.params, "mse_over", "known") == "all":
            mse = mse_over_batch(features, y, *self.global_protos)
        else:
            mse = mse_to_prototypes(features, y, *self.global_protos)
        return None if mse is None else self.params.lamda * mse

    def _collect(self, features: torch.Tensor, y: torch.Tensor) -> None:
        """Sum the features of this round's training batches per class (HtFLlib's timing)."""
        c = self.model.num_classes
        if self._collected_round != self.round or self._sums is None or self._counts is None:
            self._sums = torch.zeros(c, features.shape[1], dtype=torch.float64, device=y.device)
            self._counts = torch.zeros(c, dtype=torch.float64, device=y.device)
            self._collected_round = self.round
        self._sums.index_add_(0, y, features.detach().to(torch.float64))
        self._counts += torch.bincount(y, minlength=c)[:c].to(torch.float64)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if self.global_protos is None:
            return self.model(x)
        return nearest_prototype_scores(self.model.features(x), *self.global_protos)

    def upload(self) -> Payload:
        if (
            getattr(self.params, "prototypes", "after_training") == "during_training"
            and self._collected_round == self.round
            and self._sums is not None
            and self._counts is not None
        ):
            means = self._sums / self._counts.clamp(min=1).unsqueeze(1)
            return prototypes.prototype_payload(means.cpu().numpy(), self._counts.cpu().numpy())
        return prototypes.prototype_payload(*self.class_prototypes())


class FedProtoServer(ServerSide):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.global_protos: Payload = {}

    def global_payload(self) -> Payload:
        return self.global_protos

    def merge(self, uploads: list[Upload]) -> None:
        if not uploads:
            return
        if self.params.weighting == "clients":
            self.global_protos = prototypes.client_mean_prototypes(
                uploads, self.num_classes, self.feature_dim
            )
        else:
            self.global_protos = prototypes.weighted_prototypes(
                uploads, self.num_classes, self.feature_dim
            )


METHOD = Method(
    name="fedproto",
    params=FedProtoParams,
    client=PrototypeClient,
    server=FedProtoServer,
    declared_upload_bytes=lambda params, num_classes, feature_dim, model_bytes, **_: (
        prototypes.declared_prototype_bytes(num_classes, feature_dim)
    ),
    summary="class prototypes, weighted mean",
)
