"""FedProto (Tan et al., AAAI 2022): clients share class prototypes, not models.

Local loss: cross-entropy + lambda * ||f(x) - P_y||^2 to the global prototype of the label.
Server: per class, the sample-weighted average of the client prototypes. Inference (as in
HtFLlib) by the nearest global prototype once one exists.
"""

from __future__ import annotations

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


@table
class FedProtoParams:
    lamda: checks.NonNegative = 1.0


class PrototypeClient(ClientSide):
    """Client side shared by prototype methods: regularise towards, and predict by, protos."""

    global_protos: tuple[torch.Tensor, torch.Tensor] | None = None

    def receive(self, download: Payload) -> None:
        protos = prototypes.as_tensors(download)
        if protos is not None:
            protos = (self.on_device(protos[0]), self.on_device(protos[1]))
        self.global_protos = protos

    def extra_loss(self, features, logits, y):
        if self.global_protos is None or self.params.lamda == 0:
            return None
        mse = mse_to_prototypes(features, y, *self.global_protos)
        return None if mse is None else self.params.lamda * mse

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if self.global_protos is None:
            return self.model(x)
        return nearest_prototype_scores(self.model.features(x), *self.global_protos)

    def upload(self) -> Payload:
        return prototypes.prototype_payload(*self.class_prototypes())


class FedProtoServer(ServerSide):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.global_protos: Payload = {}

    def global_payload(self) -> Payload:
        return self.global_protos

    def merge(self, uploads: list[Upload]) -> None:
        if uploads:
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
