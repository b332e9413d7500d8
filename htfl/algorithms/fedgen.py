"""FedGen (Zhu et al., ICML 2021): a server-side generator of features distils the clients'
heads into every client, without data.

Client: trains its private model with cross-entropy plus ``lamda`` * cross-entropy of its *head*
on features the global generator draws for labels sampled from the global label distribution.
Upload: its head, and its training label counts in the first round only. Server: (1) trains the
generator G(z, y) -> feature so that the uploaded heads classify its features as y: the loss is
sum_k alpha_{k,y} * CE(head_k(G(z, y)), y), with alpha_{k,y} the share of label y's samples
that client k holds; (2) averages the heads, weighted by sample counts. Download: the global
head (replaces the client's), the generator's weights and the global label distribution.

Differences from HtFLlib's ``clientgen.py`` / ``servergen.py``, where we follow the paper:

* HtFLlib weights every head by its client's *total* sample share and takes one cross-entropy of
  the weighted sum of logits; the paper's ensemble uses *label-specific* weights alpha_{k,y}
  (a head speaks for the labels its client has seen), as in its official code.
* HtFLlib draws the generator's noise from U(0, 1) (``torch.rand``) although its comment says
  Gaussian; the paper uses N(0, I).
* HtFLlib knows every client's label counts from the start; here a client sends them with its
  first upload (``num_classes`` floats, once) and the server falls back to the counts reported at
  setup for a client whose first upload it missed.
* Neither HtFLlib nor this module adds the diversity regulariser of FedGen's official code.

Parameters choose HtFLlib's behaviour where both are reasonable (the ``htfllib`` preset sets
them): ``generator_from = "start"`` sends the (untrained) generator from round 1, as HtFLlib
does, instead of once it has been trained (``"trained"``); until the global label prior is
known (after the first uploads) a client draws labels from its own label counts.
``generator_mode = "train"`` runs the client's copy with BatchNorm in train mode (batch
statistics), as HtFLlib's saved generator is; ``"eval"`` uses the running statistics the
server trained. ``noise = "uniform"`` draws U(0, 1) noise as HtFLlib does.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from htfl import accelerator
from htfl.algorithms import checks
from htfl.algorithms.base import Method, Payload, Upload
from htfl.algorithms.lg_fedavg import HeadAveragingServer, HeadSharingClient
from htfl.algorithms.state import linear_bytes, load_module_payload, module_payload
from htfl.validation import table

GENERATOR = "generator."


@table
class FedGenParams:
    lamda: checks.NonNegative = 1.0  # weight of the generated-feature loss on the client
    noise_dim: checks.AtLeastOne = 32
    hidden_dim: checks.AtLeastOne = 256
    generator_learning_rate: checks.Positive = 0.005
    server_epochs: checks.AtLeastOne = 100  # generator steps per round
    generator_batch_size: checks.AtLeastTwo = 32
    #: clients use the generator once the server has trained it, or from round 1 (HtFLlib)
    generator_from: Literal["trained", "start"] = "trained"
    #: the client's generator runs in eval mode (running BatchNorm statistics) or train mode
    generator_mode: Literal["eval", "train"] = "eval"
    #: the generator's noise: N(0, I) (the paper) or U(0, 1) (HtFLlib)
    noise: Literal["gaussian", "uniform"] = "gaussian"


class FeatureGenerator(nn.Module):
    """G(z, y): [noise, one-hot label] -> Linear-BN-ReLU -> Linear -> a ``d``-dim feature."""

    def __init__(
        self,
        noise_dim: int,
        num_classes: int,
        hidden_dim: int,
        feature_dim: int,
        noise: str = "gaussian",
    ) -> None:
        super().__init__()
        self.noise = noise
        self.noise_dim = noise_dim
        self.num_classes = num_classes
        self.hidden = nn.Sequential(
            nn.Linear(noise_dim + num_classes, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU()
        )
        self.out = nn.Linear(hidden_dim, feature_dim)

    def forward(
        self, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        draw = torch.rand if self.noise == "uniform" else torch.randn
        # drawn on the CPU (a seeded CPU generator) whatever the device, then moved: same draws
        noise = draw(len(labels), self.noise_dim, generator=generator).to(labels.device)
        return self.out(self.hidden(torch.cat([noise, F.one_hot(labels, self.num_classes)], 1)))


def label_weights(counts: np.ndarray) -> np.ndarray:
    """alpha[k, y]: client k's share of all samples of label y (0 where nobody holds y)."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=0)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def label_distribution(counts: np.ndarray) -> np.ndarray:
    """The global label distribution p(y) from every client's counts."""
    totals = np.asarray(counts, dtype=np.float64).sum(axis=0)
    return totals / totals.sum() if totals.sum() > 0 else totals


def ensemble_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    heads: list[tuple[torch.Tensor, torch.Tensor]],
    alpha: torch.Tensor,
) -> torch.Tensor:
    """mean over samples of sum_k alpha[k, y] * CE(head_k(feature), y) (FedGen's teacher loss)."""
    loss = torch.zeros(len(labels), device=labels.device)
    for k, (weight, bias) in enumerate(heads):
        loss = loss + alpha[k, labels] * F.cross_entropy(
            F.linear(features, weight, bias), labels, reduction="none"
        )
    return loss.mean()


class FedGenClient(HeadSharingClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        p = self.params
        m = self.model
        self.generator = FeatureGenerator(
            p.noise_dim, m.num_classes, p.hidden_dim, m.feature_dim, p.noise
        )
        self.generator.eval().requires_grad_(False)
        self.has_generator = False
        self.label_prior: torch.Tensor | None = None
        self.rng = torch.Generator().manual_seed(self.seed)
        self.sent_counts = False

    def receive(self, download: Payload) -> None:
        super().receive(download)
        if load_module_payload(self.generator, download, GENERATOR):
            self.has_generator = True
            if "label_prior" in download:
                self.label_prior = torch.from_numpy(download["label_prior"].astype(np.float64))
            else:  # generator from round 1: the global prior is not known yet
                own = np.bincount(self.shard.train_y, minlength=self.model.num_classes)
                self.label_prior = torch.from_numpy(own.astype(np.float64))

    def training_loss(self, x, y):
        loss = F.cross_entropy(self.model(x), y)
        if self.label_prior is not None and self.params.lamda > 0:
            # sampled on the CPU (its seeded generator) whatever the device: same draws
            labels = torch.multinomial(self.label_prior, len(y), True, generator=self.rng)
            self.generator.train(self.params.generator_mode == "train")
            with torch.no_grad():
                generated = self.on_device(self.generator(labels, self.rng))
            self.generator.eval()
            labels = self.on_device(labels)
            loss = loss + self.params.lamda * F.cross_entropy(self.model.head(generated), labels)
        return loss

    def upload(self) -> Payload:
        payload = super().upload()
        if not self.sent_counts:
            counts = np.bincount(self.shard.train_y, minlength=self.model.num_classes)
            payload["label_counts"] = counts.astype(np.float32)
            self.sent_counts = True
        return payload


class FedGenServer(HeadAveragingServer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        p = self.params
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.generator = FeatureGenerator(
                p.noise_dim, self.num_classes, p.hidden_dim, self.feature_dim, p.noise
            )
        #: the workstation's GPU when it has one (the generator trains there)
        self.device = accelerator.server_device()
        self.generator.to(self.device)
        self.optimizer = torch.optim.Adam(self.generator.parameters(), lr=p.generator_learning_rate)
        self.rng = torch.Generator().manual_seed(self.seed)
        self.label_counts: dict[int, np.ndarray] = {}
        self.trained = False
        self.last_loss = float("nan")

    def global_payload(self) -> Payload:
        payload = dict(super().global_payload())
        if self.trained or self.params.generator_from == "start":
            payload.update(module_payload(self.generator, GENERATOR))
        if self.label_counts:
            counts = np.stack(list(self.label_counts.values()))
            payload["label_prior"] = label_distribution(counts).astype(np.float32)
        return payload

    def _counts(self, upload: Upload) -> np.ndarray:
        if "label_counts" in upload.payload:
            self.label_counts[upload.client_index] = upload.payload["label_counts"]
        elif upload.client_index not in self.label_counts:  # missed its first upload
            counts = np.zeros(self.num_classes, dtype=np.float32)
            for k, n in upload.label_counts.items():
                counts[k] = n
            self.label_counts[upload.client_index] = counts
        return self.label_counts[upload.client_index]

    def train_generator(self, uploads: list[Upload]) -> None:
        counts = np.stack([self._counts(u) for u in uploads])
        alpha = torch.from_numpy(label_weights(counts).astype(np.float32)).to(self.device)
        prior = torch.from_numpy(label_distribution(counts))
        heads = [
            (
                torch.from_numpy(u.payload["head.weight"]).to(self.device),
                torch.from_numpy(u.payload["head.bias"]).to(self.device),
            )
            for u in uploads
        ]
        self.generator.train()
        for _ in range(self.params.server_epochs):
            labels = torch.multinomial(
                prior, self.params.generator_batch_size, True, generator=self.rng
            ).to(self.device)
            loss = ensemble_loss(self.generator(labels, self.rng), labels, heads, alpha)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.last_loss = float(loss.detach())
        self.generator.eval()
        self.trained = True

    def merge(self, uploads: list[Upload]) -> None:
        if not uploads:
            return
        self.train_generator(uploads)
        super().merge(uploads)


METHOD = Method(
    name="fedgen",
    params=FedGenParams,
    client=FedGenClient,
    server=FedGenServer,
    declared_upload_bytes=lambda params, num_classes, feature_dim, model_bytes, **_: linear_bytes(
        feature_dim, num_classes
    ),
    summary="heads + label counts once; server trains a feature generator",
    exchanges_head=True,
)
