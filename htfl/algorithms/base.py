"""What every HtFL method is: a client side, a server side, and the payload between them.

A method module defines ``Params`` (a frozen dataclass validated before a run starts), a
``ClientSide`` that lives on the device with the private model, a ``ServerSide`` that lives in
the ServerApp, and ``declared_upload_bytes``. Only :data:`Payload` (named float arrays) ever
crosses the message boundary, so what a method exchanges is explicit and measurable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from htfl.datasets import ClientShard
from htfl.datasets.torch_data import to_loader
from htfl.models import SplitModel

Payload = dict[str, np.ndarray]


@dataclass(frozen=True)
class TrainSettings:
    """Local-training hyperparameters shared by every method."""

    local_epochs: int = 1
    batch_size: int = 10
    learning_rate: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0

    def problems(self) -> list[str]:
        out = []
        if self.local_epochs < 1:
            out.append(f"local_epochs: expected an integer >= 1, got {self.local_epochs}")
        if self.batch_size < 1:
            out.append(f"batch_size: expected an integer >= 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            out.append(f"learning_rate: expected a number > 0, got {self.learning_rate}")
        if self.momentum < 0 or self.weight_decay < 0:
            out.append("momentum and weight_decay must be >= 0")
        return out


@dataclass
class Upload:
    """One client's reply to a training round, as the server side sees it."""

    client_index: int
    num_samples: int
    payload: Payload
    label_counts: dict[int, int] = field(default_factory=dict)


@dataclass
class EvalResult:
    accuracy: float
    loss: float
    num_samples: int


class ClientSide(ABC):
    """The device half of a method: owns the private model, which never leaves the device."""

    def __init__(
        self,
        model: SplitModel,
        shard: ClientShard,
        settings: TrainSettings,
        params: Any,
        seed: int,
    ) -> None:
        self.model = model
        self.shard = shard
        self.settings = settings
        self.params = params
        self.seed = seed
        self.round = 0
        self.optimizer = torch.optim.SGD(
            model.parameters(),
            lr=settings.learning_rate,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
        )
        self._train_loader = to_loader(
            shard.train_x, shard.train_y, settings.batch_size, shuffle=True, seed=seed
        )

    # --- what a method overrides -------------------------------------------------------
    def receive(self, download: Payload) -> None:  # noqa: B027 - optional hook
        """Take in the server's global knowledge (called before evaluate and train)."""

    def extra_loss(
        self, features: torch.Tensor, logits: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor | None:
        """A regulariser added to cross-entropy during local training, if the method has one."""
        return None

    @abstractmethod
    def upload(self) -> Payload:
        """What this client sends after local training."""

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits-like scores used for evaluation (higher is more likely)."""
        return self.model(x)

    # --- shared machinery --------------------------------------------------------------
    def train(self) -> float:
        """Run local epochs; return the mean training loss."""
        self.round += 1
        self.model.train()
        total, count = 0.0, 0
        for _ in range(self.settings.local_epochs):
            for x, y in self._train_loader:
                if len(y) < 2:  # BatchNorm cannot train on a single sample
                    continue
                features, logits = self.model.forward_with_features(x)
                loss = F.cross_entropy(logits, y)
                extra = self.extra_loss(features, logits, y)
                if extra is not None:
                    loss = loss + extra
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                total += float(loss.detach()) * len(y)
                count += len(y)
        return total / max(count, 1)

    @torch.no_grad()
    def evaluate(self) -> EvalResult:
        self.model.eval()
        x = torch.from_numpy(self.shard.test_x)
        y = torch.from_numpy(self.shard.test_y)
        if len(y) == 0:
            return EvalResult(0.0, 0.0, 0)
        scores = self.predict(x)
        loss = float(F.cross_entropy(self.model(x), y))
        accuracy = float((scores.argmax(dim=1) == y).float().mean())
        return EvalResult(accuracy, loss, len(y))

    @torch.no_grad()
    def class_prototypes(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean feature per class over the local training set, and which classes are present."""
        self.model.eval()
        x = torch.from_numpy(self.shard.train_x)
        y = torch.from_numpy(self.shard.train_y)
        features = self.model.features(x)
        num_classes, d = self.model.num_classes, self.model.feature_dim
        protos = np.zeros((num_classes, d), dtype=np.float32)
        present = np.zeros(num_classes, dtype=np.float32)
        for c in range(num_classes):
            mask = y == c
            if bool(mask.any()):
                protos[c] = features[mask].mean(dim=0).numpy()
                present[c] = float(mask.sum())
        return protos, present


class ServerSide(ABC):
    """The server half of a method: explicit state, updated from the clients' uploads."""

    def __init__(self, params: Any, num_classes: int, feature_dim: int, seed: int) -> None:
        self.params = params
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.seed = seed

    @abstractmethod
    def global_payload(self) -> Payload:
        """The global knowledge sent to every client at the start of a round."""

    @abstractmethod
    def aggregate(self, uploads: list[Upload]) -> None:
        """Update the server state from this round's uploads."""


@dataclass(frozen=True)
class NoParams:
    def problems(self) -> list[str]:
        return []


@dataclass(frozen=True)
class Method:
    """A registered method: its name, parameter schema and its two sides."""

    name: str
    params: type
    client: type[ClientSide]
    server: type[ServerSide]
    declared_upload_bytes: Callable[[Any, int, int, int], int]
    homogeneous: bool = False  # True when every client must train the same architecture
    summary: str = ""
    aliases: ClassVar[tuple[str, ...]] = ()


def mse_to_prototypes(
    features: torch.Tensor, y: torch.Tensor, protos: torch.Tensor, present: torch.Tensor
) -> torch.Tensor | None:
    """Mean squared distance of each feature to its class's global prototype (known classes)."""
    mask = present[y] > 0
    if not bool(mask.any()):
        return None
    return nn.functional.mse_loss(features[mask], protos[y[mask]])


def nearest_prototype_scores(
    features: torch.Tensor, protos: torch.Tensor, present: torch.Tensor
) -> torch.Tensor:
    """Negative distance to each class prototype; classes without a prototype score -inf."""
    dist = torch.cdist(features, protos)
    return (-dist).masked_fill(present.unsqueeze(0) <= 0, float("-inf"))
