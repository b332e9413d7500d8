"""Prototype payloads shared by FedProto, FedTGP, FedGH and FedKTL: per-class means plus counts."""

from __future__ import annotations

import numpy as np
import torch

from htfl.algorithms.base import Payload, Upload


def prototype_payload(protos: np.ndarray, counts: np.ndarray) -> Payload:
    return {"prototypes": protos.astype(np.float32), "counts": counts.astype(np.float32)}


def declared_prototype_bytes(num_classes: int, feature_dim: int) -> int:
    return num_classes * feature_dim * 4 + num_classes * 4


def weighted_prototypes(uploads: list[Upload], num_classes: int, feature_dim: int) -> Payload:
    """Per class, the sample-weighted mean of the clients' prototypes (FedProto, eq. 6)."""
    total = np.zeros((num_classes, feature_dim), dtype=np.float64)
    weight = np.zeros(num_classes, dtype=np.float64)
    for upload in uploads:
        counts = upload.payload["counts"].astype(np.float64)
        total += counts[:, None] * upload.payload["prototypes"]
        weight += counts
    present = weight > 0
    protos = np.zeros_like(total)
    protos[present] = total[present] / weight[present, None]
    return prototype_payload(protos, weight)


def client_mean_prototypes(uploads: list[Upload], num_classes: int, feature_dim: int) -> Payload:
    """Per class, the plain mean over the clients holding it (HtFLlib's ``proto_aggregation``:
    each client counts once, whatever its sample count); counts are the samples behind it."""
    total = np.zeros((num_classes, feature_dim), dtype=np.float64)
    holders = np.zeros(num_classes, dtype=np.float64)
    weight = np.zeros(num_classes, dtype=np.float64)
    for upload in uploads:
        counts = upload.payload["counts"].astype(np.float64)
        held = counts > 0
        total[held] += upload.payload["prototypes"][held]
        holders += held
        weight += counts
    present = holders > 0
    protos = np.zeros_like(total)
    protos[present] = total[present] / holders[present, None]
    return prototype_payload(protos, weight)


def as_tensors(download: Payload) -> tuple[torch.Tensor, torch.Tensor] | None:
    if "prototypes" not in download:
        return None
    return torch.from_numpy(download["prototypes"]), torch.from_numpy(download["counts"])


def prototype_pairs(uploads: list[Upload]) -> tuple[np.ndarray, np.ndarray]:
    """Every (client, class) prototype a client holds, as rows, and its class."""
    protos, labels = [], []
    for upload in uploads:
        for k in np.flatnonzero(upload.payload["counts"] > 0):
            protos.append(upload.payload["prototypes"][k])
            labels.append(int(k))
    width = uploads[0].payload["prototypes"].shape[1] if uploads else 0
    return (
        np.asarray(protos, dtype=np.float32).reshape(-1, width),
        np.asarray(labels, dtype=np.int64),
    )
