"""FedTGP (Zhang et al., AAAI 2024): trainable global prototypes with an adaptive margin.

Clients behave as in FedProto. The server keeps a small network mapping each class id to a
global prototype, trained so that every uploaded client prototype is closer to its own class's
global prototype than to any other by a margin. The margin is adaptive:
``min(max_k gap_k, tau)``, where ``gap_k`` is the distance from class k's cluster centre (the
mean of the clients' prototypes of k) to the nearest other centre. Checked against HtFLlib's
``servertgp.py``: server learning rate = the clients' learning rate, hidden width = d.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from htfl import accelerator
from htfl.algorithms import checks, prototypes
from htfl.algorithms.base import Method, Payload, ServerSide, Upload
from htfl.algorithms.fedproto import PrototypeClient
from htfl.validation import table


@table
class FedTGPParams:
    lamda: checks.NonNegative = 0.1
    tau: checks.Positive = 100.0  # margin threshold
    server_epochs: checks.AtLeastOne = 100
    server_learning_rate: checks.Positive = 0.01
    server_batch_size: checks.AtLeastOne = 10
    #: the prototype MSE over the rows with a global prototype, or HtFLlib's whole-batch mean
    #: (see :mod:`htfl.algorithms.fedproto`)
    mse_over: Literal["known", "all"] = "known"


def cluster_centres(uploads: list[Upload], num_classes: int) -> dict[int, np.ndarray]:
    """Unweighted mean over clients of their prototype for each class they hold."""
    centres: dict[int, list[np.ndarray]] = {}
    for upload in uploads:
        for k in np.flatnonzero(upload.payload["counts"] > 0):
            centres.setdefault(int(k), []).append(upload.payload["prototypes"][k])
    return {k: np.mean(v, axis=0) for k, v in sorted(centres.items()) if k < num_classes}


def class_gaps(centres: dict[int, np.ndarray]) -> dict[int, float]:
    """Distance from each class centre to its nearest other centre.

    A class with no neighbour (only one class seen) takes the smallest gap, as in HtFLlib.
    """
    gaps = {k: np.inf for k in centres}
    keys = list(centres)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            d = float(np.linalg.norm(centres[a] - centres[b]))
            gaps[a] = min(gaps[a], d)
            gaps[b] = min(gaps[b], d)
    finite = [g for g in gaps.values() if np.isfinite(g)]
    fill = min(finite) if finite else 0.0
    return {k: (g if np.isfinite(g) else fill) for k, g in gaps.items()}


def adaptive_margin(gaps: dict[int, float], tau: float) -> float:
    return min(max(gaps.values(), default=0.0), tau)


class TrainableGlobalPrototypes(nn.Module):
    """Class id -> embedding -> Linear-ReLU -> Linear: one global prototype per class."""

    def __init__(self, num_classes: int, feature_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_classes, feature_dim)
        self.middle = nn.Sequential(nn.Linear(feature_dim, hidden_dim), nn.ReLU())
        self.out = nn.Linear(hidden_dim, feature_dim)

    def forward(self, class_ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.middle(self.embedding(class_ids)))


def margin_loss(
    client_protos: torch.Tensor, labels: torch.Tensor, global_protos: torch.Tensor, margin: float
) -> torch.Tensor:
    """Cross-entropy over negative distances, with the true class pushed away by ``margin``."""
    dist = torch.cdist(client_protos, global_protos)
    dist = dist + margin * F.one_hot(labels, global_protos.shape[0])
    return F.cross_entropy(-dist, labels)


class FedTGPServer(ServerSide):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Seeded for a reproducible start, without reseeding the process's global RNG
        # (a ServerApp or test that builds clients after the server would inherit the seed).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.generator = TrainableGlobalPrototypes(
                self.num_classes, self.feature_dim, self.feature_dim
            )
        #: the workstation's GPU when it has one; random draws stay on the CPU (same order)
        self.device = accelerator.server_device()
        self.generator.to(self.device)
        self.optimizer = torch.optim.SGD(
            self.generator.parameters(), lr=self.params.server_learning_rate
        )
        self.rng = torch.Generator().manual_seed(self.seed)
        self.seen = np.zeros(self.num_classes, dtype=np.float32)
        self.margin = 0.0
        self.last_loss = float("nan")
        self._payload: Payload = {}

    def global_payload(self) -> Payload:
        return self._payload

    def merge(self, uploads: list[Upload]) -> None:
        if not uploads:
            return
        self.margin = adaptive_margin(
            class_gaps(cluster_centres(uploads, self.num_classes)), self.params.tau
        )
        for upload in uploads:
            self.seen += upload.payload["counts"]
        protos, labels = prototypes.prototype_pairs(uploads)
        x, y = torch.from_numpy(protos).to(self.device), torch.from_numpy(labels).to(self.device)
        all_classes = torch.arange(self.num_classes, device=self.device)
        self.generator.train()
        bs = self.params.server_batch_size
        for _ in range(self.params.server_epochs):
            order = torch.randperm(len(y), generator=self.rng)
            for start in range(0, len(y), bs):
                idx = order[start : start + bs].to(self.device)
                loss = margin_loss(x[idx], y[idx], self.generator(all_classes), self.margin)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self.last_loss = float(loss.detach())
        self.generator.eval()
        with torch.no_grad():
            global_protos = self.generator(all_classes).cpu().numpy()
        # Only classes some client has seen get a prototype clients may use.
        self._payload = prototypes.prototype_payload(global_protos, self.seen)


METHOD = Method(
    name="fedtgp",
    params=FedTGPParams,
    client=PrototypeClient,
    server=FedTGPServer,
    declared_upload_bytes=lambda params, num_classes, feature_dim, model_bytes, **_: (
        prototypes.declared_prototype_bytes(num_classes, feature_dim)
    ),
    summary="trainable global prototypes, adaptive margin",
)
