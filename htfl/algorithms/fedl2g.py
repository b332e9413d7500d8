"""FedL2G (Zhang et al., 2024, "Learning to Guide Local Training in Heterogeneous FL"): global
guiding vectors, learned so that following them helps each client's own objective.

Client: trains its private model with cross-entropy plus the MSE between each sample's feature
(``guide_space = "feature"``, vectors of size ``d``) or logits (``"logit"``, size ``classes``)
and the guiding vector of its label. After training it takes a meta step: one virtual SGD step
on a *study* batch with that loss, then the cross-entropy of the stepped model on a held-out
*quiz* batch, differentiated through the virtual step with respect to the guiding vectors.
Upload: those gradients (one row per class; zero rows for classes the study batch lacks).
Server: per class, the mean gradient over the clients that sent a non-zero row, the whole
gradient clipped to norm 100, and one SGD step of the guiding vectors with
``server_learning_rate``. Download: the guiding vectors.

The quiz samples (the first ``quiz_batches * batch_size`` of the client's training split) are
kept out of ordinary local training, as in HtFLlib. Local training walks the rest in the order
``[training] shuffle`` / ``drop_last`` give (the ``htfllib`` preset: HtFLlib's fixed order,
last partial batch dropped); the meta step's study batches are drawn shuffled either way, as
HtFLlib's ``meta_study_loader``.

Differences from HtFLlib's ``clientl2g_*.py`` / ``serverl2g_*.py``: the virtual step is taken with
``torch.func.functional_call`` instead of the ``higher`` package, BatchNorm statistics are not
updated by it, and ``warm_up_rounds`` (rounds in which clients only take the meta step and do not
train) defaults to 0 rather than 50, to suit short testbed runs.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from htfl.algorithms import checks
from htfl.algorithms.aggregate import mean_over_holders
from htfl.algorithms.base import ClientSide, Method, Payload, ServerSide, Upload
from htfl.datasets.torch_data import to_loader
from htfl.models import SplitModel
from htfl.validation import table

GUIDES, GRADS, PRESENT = "guides", "grads", "present"


@table
class FedL2GParams:
    guide_space: Literal["feature", "logit"] = "feature"
    server_learning_rate: checks.Positive = 1.0
    study_batches: checks.AtLeastOne = 1
    quiz_batches: checks.AtLeastOne = 1
    warm_up_rounds: checks.Count = 0
    max_grad_norm: checks.Positive = 100.0


def guide_dim(params: FedL2GParams, num_classes: int, feature_dim: int) -> int:
    return feature_dim if params.guide_space == "feature" else num_classes


def clip_by_norm(grad: np.ndarray, max_norm: float) -> np.ndarray:
    norm = float(np.linalg.norm(grad))
    return grad * (max_norm / norm) if norm > max_norm else grad


def guide_step(
    guides: np.ndarray, uploads: list[Upload], learning_rate: float, max_norm: float
) -> np.ndarray:
    """One SGD step of the guiding vectors with the clients' mean per-class gradient."""
    mean, _ = mean_over_holders(
        [u.payload[GRADS] for u in uploads], [u.payload[PRESENT] for u in uploads], len(guides)
    )
    return (guides - learning_rate * clip_by_norm(mean, max_norm)).astype(np.float32)


class _WithFeatures(nn.Module):
    """``forward`` returning (features, logits), so ``functional_call`` can reach both."""

    def __init__(self, model: SplitModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_with_features(x)


class FedL2GClient(ClientSide):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        s, p = self.settings, self.params
        num_quiz = min(p.quiz_batches * s.batch_size, len(self.shard.train_y) // 2)
        x, y = self.shard.train_x, self.shard.train_y
        self.quiz = (
            self.on_device(torch.from_numpy(np.array(x[:num_quiz]))),
            self.on_device(torch.from_numpy(y[:num_quiz])),
        )
        rest_x, rest_y = x[num_quiz:], y[num_quiz:]
        self._train_loader = to_loader(
            rest_x, rest_y, s.batch_size, s.shuffle, self.seed, s.drop_last
        )
        # the meta step's study batches are drawn shuffled whatever the training order
        # (HtFLlib's meta_study_loader: shuffle=True, drop_last=True)
        self._study_loader = (
            self._train_loader
            if s.shuffle
            else to_loader(rest_x, rest_y, s.batch_size, True, self.seed, drop_last=True)
        )
        self.max_grad_norm = p.max_grad_norm
        self.guides: torch.Tensor | None = None
        self.wrapped = _WithFeatures(self.model)

    def receive(self, download: Payload) -> None:
        if GUIDES in download:
            self.guides = self.on_device(torch.from_numpy(download[GUIDES]))

    def _guided_loss(self, features, logits, y, guides) -> torch.Tensor:
        target = features if self.params.guide_space == "feature" else logits
        return F.cross_entropy(logits, y) + F.mse_loss(target, guides[y])

    def training_loss(self, x, y):
        features, logits = self.model.forward_with_features(x)
        if self.guides is None:
            return F.cross_entropy(logits, y)
        return self._guided_loss(features, logits, y, self.guides)

    def train(self) -> float:
        if self.round + 1 <= self.params.warm_up_rounds:  # warm-up: the meta step only
            self.round += 1
            self.after_training()
            return float("nan")
        return super().train()

    def after_training(self) -> None:
        self.meta_grads = self.guide_gradients()

    def guide_gradients(self) -> tuple[np.ndarray, np.ndarray]:
        """d(quiz cross-entropy after one virtual guided step) / d(guiding vectors)."""
        c = self.model.num_classes
        dim = guide_dim(self.params, c, self.model.feature_dim)
        if self.guides is None:
            return np.zeros((c, dim), np.float32), np.zeros(c, np.float32)
        guides = self.guides.clone().requires_grad_(True)
        self.model.train()
        params: dict[str, torch.Tensor] = dict(self.wrapped.named_parameters())
        buffers = {k: v.clone() for k, v in self.wrapped.named_buffers()}
        study_loss, batches = torch.zeros((), device=self.device), 0
        for x, y in self._study_loader:
            if batches == self.params.study_batches:
                break
            if len(y) < 2:
                continue
            x, y = self.on_device(x), self.on_device(y)
            features, logits = functional_call(self.wrapped, (params, buffers), (x,))
            study_loss = study_loss + self._guided_loss(features, logits, y, guides)
            batches += 1
        if batches == 0 or len(self.quiz[1]) < 2:
            self.model.eval()
            return np.zeros((c, dim), np.float32), np.zeros(c, np.float32)
        grads = torch.autograd.grad(study_loss / batches, list(params.values()), create_graph=True)
        lr = self.settings.learning_rate
        stepped = {k: p - lr * g for (k, p), g in zip(params.items(), grads, strict=True)}
        _, quiz_logits = functional_call(self.wrapped, (stepped, buffers), (self.quiz[0],))
        quiz_loss = F.cross_entropy(quiz_logits, self.quiz[1])
        (guide_grad,) = torch.autograd.grad(quiz_loss, guides)
        self.model.eval()
        grad = guide_grad.detach().cpu().numpy().astype(np.float32)
        present = (np.abs(grad).sum(axis=1) > 0).astype(np.float32)
        return grad, present

    def upload(self) -> Payload:
        grad, present = self.meta_grads
        return {GRADS: grad, PRESENT: present}


class FedL2GServer(ServerSide):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        dim = guide_dim(self.params, self.num_classes, self.feature_dim)
        rng = np.random.default_rng(self.seed)
        self.guides = rng.standard_normal((self.num_classes, dim)).astype(np.float32)

    def global_payload(self) -> Payload:
        return {GUIDES: self.guides}

    def merge(self, uploads: list[Upload]) -> None:
        if uploads:
            p = self.params
            self.guides = guide_step(self.guides, uploads, p.server_learning_rate, p.max_grad_norm)


def declared_upload_bytes(params, num_classes, feature_dim, model_bytes, **_) -> int:
    return 4 * (num_classes * guide_dim(params, num_classes, feature_dim) + num_classes)


METHOD = Method(
    name="fedl2g",
    params=FedL2GParams,
    client=FedL2GClient,
    server=FedL2GServer,
    declared_upload_bytes=declared_upload_bytes,
    summary="meta-gradients of guiding vectors; one server step",
)
