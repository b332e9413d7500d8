"""FedAvg (McMahan et al., 2017): the homogeneous baseline; every client trains one architecture.

Clients build their model from the experiment seed, so all start from the same weights and
round 1 needs no download.
"""

from __future__ import annotations

from htfl.algorithms.aggregate import weighted_average
from htfl.algorithms.base import ClientSide, Method, NoParams, Payload, ServerSide, Upload
from htfl.algorithms.state import load_module_payload, module_payload

__all__ = ["METHOD", "weighted_average"]


class FedAvgClient(ClientSide):
    def receive(self, download: Payload) -> None:
        load_module_payload(self.model, download)

    def upload(self) -> Payload:
        return module_payload(self.model)


class FedAvgServer(ServerSide):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.global_model: Payload = {}

    def global_payload(self) -> Payload:
        return self.global_model

    def merge(self, uploads: list[Upload]) -> None:
        if uploads:
            self.global_model = weighted_average(
                [u.payload for u in uploads], [u.num_samples for u in uploads]
            )


METHOD = Method(
    name="fedavg",
    params=NoParams,
    client=FedAvgClient,
    server=FedAvgServer,
    declared_upload_bytes=lambda params, num_classes, feature_dim, model_bytes, **_: model_bytes,
    homogeneous=True,
    summary="whole model, sample-weighted average",
)
