"""What every HtFL method is: a client side, a server side, and the payload between them.

A method module defines ``Params`` (a pydantic table, :func:`htfl.validation.table`, so the
experiment loader validates it with every other section before a run starts; a ``Params`` that
names files may add ``check_files() -> list[str]``, run by the preflight step), a
``ClientSide`` that lives on the device with the private model, a ``ServerSide`` that lives in
the ServerApp, and ``declared_upload_bytes``. Only :data:`Payload` (named numpy arrays) ever
crosses the message boundary, so what a method exchanges is explicit and measurable.

The client side's training loop lives here; a method changes it through small hooks:

* ``receive(download)``: take in the global knowledge (called before ``evaluate`` and before
  ``train``, so it must be idempotent for a payload it has already seen);
* ``extra_loss(features, logits, y)``: a regulariser added to cross-entropy;
* ``training_loss(x, y)``: the whole loss of one batch, for methods that train more than the
  private model's cross-entropy (a shared model beside it, a generator's samples...);
* ``after_training()``: work once local epochs are over (prototypes, a meta step...);
* ``upload()``: what goes to the server;
* ``predict(x)`` / ``eval_logits(x)``: the scores evaluation ranks, and the logits its loss uses.

Modules a method adds on the device (a shared model, a projector) are registered with
:meth:`ClientSide.add_module`, which puts them on the same optimizer, train/eval switch and
device. Tensors a method builds from a download go through :meth:`ClientSide.on_device`; what it
uploads leaves through ``.cpu()``. The device and precision come from ``[training]``
(:mod:`htfl.accelerator`); on a CPU in fp32 the loop is the one it always was, bit for bit.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from htfl import accelerator
from htfl.datasets import ClientShard
from htfl.datasets.torch_data import to_loader
from htfl.models import SplitModel, build_model
from htfl.validation import Flag, Int, Number, above, at_least, table

#: A module type kept through :meth:`ClientSide.add_module` (a Linear stays a Linear).
ModuleT = TypeVar("ModuleT", bound=nn.Module)

Payload = dict[str, np.ndarray]

log = logging.getLogger(__name__)

#: The input shape assumed by ``declared_upload_bytes`` when the caller gives none: the built-in
#: digits dataset. Only methods that upload a model of their own depend on it.
DEFAULT_INPUT_SHAPE: tuple[int, ...] = (1, 8, 8)


@table
class TrainSettings:
    """Local-training hyperparameters shared by every method."""

    local_epochs: Annotated[Int, at_least(1)] = 1
    batch_size: Annotated[Int, at_least(1)] = 10
    learning_rate: Annotated[Number, above(0)] = 0.01
    momentum: Annotated[Number, at_least(0)] = 0.0
    weight_decay: Annotated[Number, at_least(0)] = 0.0
    #: reshuffle the training set every epoch (HtFLlib: false, a fixed order)
    shuffle: Flag = True
    #: leave out the last partial batch of an epoch (HtFLlib: true; 39 samples at batch 10
    #: train on 30)
    drop_last: Flag = False
    #: where a client trains: "auto" takes CUDA where torch sees a GPU, unless the device
    #: class's inventory says otherwise (``htfl_training_device``); "cuda" without one fails
    #: before any round
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: mixed precision of the forward pass: fp16 (with loss scaling) suits Jetsons' GPUs,
    #: bf16 needs Ampere or a recent CPU; fp32 is exact and the default
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"


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

    #: Clip the gradient norm of every trained parameter to this before each step (None: no clip).
    max_grad_norm: float | None = None

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
        self.extra_modules: list[nn.Module] = []
        #: where this client's model, optimizer state, batches and method tensors live
        self.device = accelerator.resolve_device(settings.device)
        self.precision = settings.precision
        model.to(self.device)
        self._scaler = accelerator.grad_scaler(self.device, self.precision)
        self.optimizer = torch.optim.SGD(
            model.parameters(),
            lr=settings.learning_rate,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
        )
        self._train_loader = to_loader(
            shard.train_x,
            shard.train_y,
            settings.batch_size,
            shuffle=settings.shuffle,
            seed=seed,
            drop_last=settings.drop_last,
        )

    def on_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` where this client trains (the same tensor on a CPU client)."""
        return tensor.to(self.device, non_blocking=True)

    # --- what a method overrides -------------------------------------------------------
    def receive(self, download: Payload) -> None:  # noqa: B027 - optional hook
        """Take in the server's global knowledge (called before evaluate and train)."""

    def extra_loss(
        self, features: torch.Tensor, logits: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor | None:
        """A regulariser added to cross-entropy during local training, if the method has one."""
        return None

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss of one training batch: cross-entropy of the private model + ``extra_loss``."""
        features, logits = self.model.forward_with_features(x)
        loss = F.cross_entropy(logits, y)
        extra = self.extra_loss(features, logits, y)
        return loss if extra is None else loss + extra

    def after_training(self) -> None:  # noqa: B027 - optional hook
        """Called once the local epochs of a round are over, before ``upload``."""

    @abstractmethod
    def upload(self) -> Payload:
        """What this client sends after local training."""

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits-like scores used for evaluation (higher is more likely)."""
        return self.model(x)

    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The logits the reported test loss is computed from."""
        return self.model(x)

    # --- helpers for methods -----------------------------------------------------------
    @property
    def federation_seed(self) -> int:
        """The experiment's seed, shared by every client (``seed`` is experiment seed + index)."""
        return self.seed - self.shard.client_index

    def add_module(self, module: ModuleT, learning_rate: float | None = None) -> ModuleT:
        """Train ``module`` beside the private model (same optimizer, its own learning rate)."""
        self.extra_modules.append(module)
        module.to(self.device)
        params = [p for p in module.parameters() if p.requires_grad]
        if params:
            group: dict[str, Any] = {"params": params}
            if learning_rate is not None:
                group["lr"] = learning_rate
            self.optimizer.add_param_group(group)
        return module

    def build_shared_model(self, arch: str, feature_dim: int | None = None) -> SplitModel:
        """A model every client builds identically (from the experiment seed) for this shard."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.federation_seed)
            return build_model(
                arch,
                tuple(self.shard.input_shape),
                self.model.num_classes,
                feature_dim if feature_dim is not None else self.model.feature_dim,
            )

    def _set_mode(self, training: bool) -> None:
        for module in (self.model, *self.extra_modules):
            module.train(training)

    # --- shared machinery --------------------------------------------------------------
    def train(self) -> float:
        """Run local epochs; return the mean training loss."""
        self.round += 1
        self._set_mode(True)
        total, count = 0.0, 0
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        for _ in range(self.settings.local_epochs):
            for x, y in self._train_loader:
                if len(y) < 2:  # BatchNorm cannot train on a single sample
                    continue
                x, y = self.on_device(x), self.on_device(y)
                with accelerator.autocast(self.device, self.precision):
                    loss = self.training_loss(x, y)
                self.optimizer.zero_grad()
                self._scaler.scale(loss).backward()
                if self.max_grad_norm is not None:
                    self._scaler.unscale_(self.optimizer)
                    self.clip_gradients(params)
                self._scaler.step(self.optimizer)
                self._scaler.update()
                total += float(loss.detach()) * len(y)
                count += len(y)
        self._set_mode(False)
        self.after_training()
        return total / max(count, 1)

    def clip_gradients(self, params: list[torch.Tensor]) -> None:
        """Clip before each step: one norm over every trained parameter (``max_grad_norm``); a
        method training several models may clip each on its own (FML, as HtFLlib)."""
        torch.nn.utils.clip_grad_norm_(params, float(self.max_grad_norm or 0.0))

    @torch.no_grad()
    def evaluate(self) -> EvalResult:
        self._set_mode(False)
        x = self.on_device(torch.from_numpy(self.shard.test_x))
        y = self.on_device(torch.from_numpy(self.shard.test_y))
        if len(y) == 0:
            return EvalResult(0.0, 0.0, 0)
        scores = self.predict(x)
        loss = float(F.cross_entropy(self.eval_logits(x), y))
        accuracy = float((scores.argmax(dim=1) == y).float().mean())
        return EvalResult(accuracy, loss, len(y))

    @torch.no_grad()
    def class_prototypes(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean feature per class over the local training set, and how many samples each."""
        self._set_mode(False)
        x = self.on_device(torch.from_numpy(self.shard.train_x))
        y = torch.from_numpy(self.shard.train_y)
        return class_means(self.model.features(x), y, self.model.num_classes)


class ServerSide(ABC):
    """The server half of a method: explicit state, updated from the clients' uploads."""

    def __init__(self, params: Any, num_classes: int, feature_dim: int, seed: int) -> None:
        self.params = params
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.seed = seed
        self.rejected: list[tuple[int, str]] = []

    @abstractmethod
    def global_payload(self) -> Payload:
        """The global knowledge sent to every client at the start of a round."""

    def aggregate(self, uploads: list[Upload]) -> None:
        """Update the server state from this round's uploads.

        An upload with a NaN or infinite number is set aside (``self.rejected`` says whose and
        why): one diverged device must not poison the global knowledge of all the others.
        """
        kept, self.rejected = [], []
        for upload in uploads:
            bad = [
                name
                for name, value in upload.payload.items()
                if np.asarray(value).dtype.kind in "fc" and not np.isfinite(value).all()
            ]
            if bad:
                self.rejected.append((upload.client_index, f"non-finite arrays: {bad[:5]}"))
                log.warning("client %d: upload set aside, non-finite %s", upload.client_index, bad)
            else:
                kept.append(upload)
        self.merge(kept)

    @abstractmethod
    def merge(self, uploads: list[Upload]) -> None:
        """The method's own update from the (finite) uploads of a round; may be empty."""


@table
class NoParams:
    """The parameters of a method that takes none (any key is unknown)."""


#: ``declared_upload_bytes(params, num_classes, feature_dim, model_bytes, input_shape=None)``:
#: the bytes of named arrays one client uploads per round (``model_bytes``: the private model's
#: state; ``input_shape``: one sample's shape, for methods that upload a model of their own).
DeclaredBytes = Callable[..., int]


@dataclass(frozen=True)
class Method:
    """A registered method: its name, parameter schema and its two sides."""

    name: str
    params: type
    client: type[ClientSide]
    server: type[ServerSide]
    declared_upload_bytes: DeclaredBytes
    homogeneous: bool = False  # True when every client must train the same architecture
    #: True when the method averages or hands out the head, so every client's must be the
    #: contract's Linear(feature_dim, num_classes) (not HtFLlib's ViT head)
    exchanges_head: bool = False
    summary: str = ""
    aliases: ClassVar[tuple[str, ...]] = ()


def class_means(
    values: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per class, the mean of ``values`` rows with that label (zeros if none), and the counts."""
    values = values.detach().to("cpu", torch.float64)
    labels = labels.cpu()
    sums = torch.zeros(num_classes, values.shape[1], dtype=torch.float64)
    sums.index_add_(0, labels, values)
    counts = torch.bincount(labels, minlength=num_classes)[:num_classes].to(torch.float64)
    means = sums / counts.clamp(min=1).unsqueeze(1)
    return means.numpy().astype(np.float32), counts.numpy().astype(np.float32)


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
