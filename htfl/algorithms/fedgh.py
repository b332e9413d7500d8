"""FedGH (Yi et al., ACM MM 2023): a generalized global header trained on the server.

Client: trains its private model with cross-entropy; after training it computes, per class, the
mean feature of its training data (a prototype) and uploads the prototypes with their sample
counts. Server: trains a global linear head on the (prototype, class) pairs of every client with
SGD and cross-entropy; the head persists across rounds and starts from the experiment seed.
Download: the global head, which replaces the client's head.

Matches HtFLlib's ``clientgh.py`` / ``servergh.py``: every (client, class) prototype is one
training example, unweighted; ``server_epochs`` passes of mini-batch SGD per round.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from htfl import accelerator
from htfl.algorithms import checks, prototypes
from htfl.algorithms.base import Method, Payload, ServerSide, Upload
from htfl.algorithms.lg_fedavg import HEAD, HeadSharingClient
from htfl.algorithms.state import head_payload, seeded_head
from htfl.validation import table


@table
class FedGHParams:
    server_epochs: checks.AtLeastOne = 100
    server_learning_rate: checks.Positive = 0.01
    server_batch_size: checks.AtLeastOne = 10


def train_head(
    head: nn.Linear,
    protos: np.ndarray,
    labels: np.ndarray,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    rng: torch.Generator,
) -> float:
    """Mini-batch SGD on cross-entropy of ``head(prototype)``; returns the last batch's loss."""
    device = head.weight.device  # the workstation's GPU when it has one
    x, y = torch.from_numpy(protos).to(device), torch.from_numpy(labels).to(device)
    optimizer = torch.optim.SGD(head.parameters(), lr=learning_rate)
    last = float("nan")
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=rng)
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size].to(device)  # drawn on the CPU: same order
            loss = F.cross_entropy(head(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            last = float(loss.detach())
    return last


class FedGHClient(HeadSharingClient):
    def upload(self) -> Payload:
        return prototypes.prototype_payload(*self.class_prototypes())


class FedGHServer(ServerSide):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.head = seeded_head(self.feature_dim, self.num_classes, self.seed)
        self.head.to(accelerator.server_device())
        self.rng = torch.Generator().manual_seed(self.seed)
        self.last_loss = float("nan")

    def global_payload(self) -> Payload:
        return head_payload(self.head, HEAD)

    def merge(self, uploads: list[Upload]) -> None:
        protos, labels = prototypes.prototype_pairs(uploads)
        if len(labels) == 0:
            return
        p = self.params
        self.last_loss = train_head(
            self.head,
            protos,
            labels,
            p.server_epochs,
            p.server_learning_rate,
            p.server_batch_size,
            self.rng,
        )


METHOD = Method(
    name="fedgh",
    params=FedGHParams,
    client=FedGHClient,
    server=FedGHServer,
    declared_upload_bytes=lambda params, num_classes, feature_dim, model_bytes, **_: (
        prototypes.declared_prototype_bytes(num_classes, feature_dim)
    ),
    summary="prototypes train a global head on the server",
    exchanges_head=True,
)
