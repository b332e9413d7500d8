"""FedAvg (McMahan et al., 2017): the homogeneous baseline; every client trains one architecture.

Clients build their model from the experiment seed, so all start from the same weights and
round 1 needs no download.
"""

from __future__ import annotations

import numpy as np
import torch

from htfl.algorithms.base import ClientSide, Method, NoParams, Payload, ServerSide, Upload


def weighted_average(payloads: list[Payload], weights: list[float]) -> Payload:
    """Sample-weighted mean of each named array (integer buffers keep their dtype)."""
    total = float(sum(weights))
    out: Payload = {}
    for key in payloads[0]:
        acc = sum(w * p[key].astype(np.float64) for p, w in zip(payloads, weights, strict=True))
        out[key] = (acc / total).astype(payloads[0][key].dtype)
    return out


class FedAvgClient(ClientSide):
    def receive(self, download: Payload) -> None:
        if download:
            state = {k: torch.from_numpy(np.array(v)) for k, v in download.items()}
            self.model.load_state_dict(state)

    def upload(self) -> Payload:
        return {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}


class FedAvgServer(ServerSide):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.global_model: Payload = {}

    def global_payload(self) -> Payload:
        return self.global_model

    def aggregate(self, uploads: list[Upload]) -> None:
        if uploads:
            self.global_model = weighted_average(
                [u.payload for u in uploads], [u.num_samples for u in uploads]
            )


METHOD = Method(
    name="fedavg",
    params=NoParams,
    client=FedAvgClient,
    server=FedAvgServer,
    declared_upload_bytes=lambda params, num_classes, feature_dim, model_bytes: model_bytes,
    homogeneous=True,
    summary="whole model, sample-weighted average",
)
