"""FedKD (Wu et al., Nature Communications 2022): a small shared mentee learns from each private
mentor by adaptive mutual distillation; only the mentee's update travels, SVD-compressed.

Client: the private model (mentor) and the shared mentee (``shared_arch``, identical on every
client) each minimise their cross-entropy plus a distillation term (KL to the other's output)
and a hidden-state term (MSE between the mentor's features and ``W_h`` times the mentee's), both
divided by the sum of the two cross-entropies (the paper's adaptive weighting). After training
the client uploads the mentee's *update* since the last global mentee, each weight matrix
factorised by SVD and truncated to the fewest singular values that keep ``energy`` of its
squared spectrum (convolution kernels are flattened to ``out x (in*k*k)``). The energy threshold
rises linearly from ``energy_start`` to ``energy_end`` over ``ramp_rounds`` rounds.

Server: reconstructs every update, takes the sample-weighted average, compresses it again at
the round's energy and sends it with a version number and the next round's energy. Clients add
the reconstructed global update to their copy of the global mentee. The server holds no model:
the global mentee is the clients' common start plus the sum of the broadcast updates.

Differences from HtFLlib's ``clientkd.py`` / ``serverkd.py``, where we follow the paper:

* HtFLlib compresses and exchanges the mentee's *parameters*; the paper exchanges its
  *gradients / updates*, which is what this module does (truncating a small update loses far less
  than truncating the model itself every round).
* HtFLlib's rank rule keeps ``r`` values only if the first ``r`` *strictly exceed* the energy and
  otherwise keeps none: a matrix whose energy needs its full rank is sent as zeros. We keep the
  smallest rank reaching the energy, and send a matrix dense when its factors would be larger.
* HtFLlib SVDs a conv kernel per ``k x k`` slice; we flatten it to ``out x (in*k*k)`` first.
* HtFLlib lets the hidden loss's gradient reach both models twice and the KL's reach its
  teacher; here each model minimises its own loss with the other side held fixed, and the
  adaptive divisor is treated as a coefficient (no gradient).
* HtFLlib averages uniformly; we weight by sample counts, as FedAvg-style aggregation does.
  ``weighting = "clients"`` (the ``htfllib`` preset) is HtFLlib's.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from htfl.algorithms import checks
from htfl.algorithms.aggregate import weighted_average
from htfl.algorithms.base import (
    DEFAULT_INPUT_SHAPE,
    ClientSide,
    Method,
    Payload,
    ServerSide,
    Upload,
)
from htfl.algorithms.distill import mutual_kd_losses
from htfl.algorithms.shared import average_weights
from htfl.algorithms.state import scalar
from htfl.models import build_model
from htfl.validation import table

#: Suffixes of a compressed matrix's three factors in a payload.
FACTORS = (":u", ":s", ":v")
VERSION, BASE_VERSION, ENERGY = "version", "base_version", "energy"
_META = (VERSION, BASE_VERSION, ENERGY)


@table
class FedKDParams:
    shared_arch: checks.Architecture = "cnn4"
    mentee_learning_rate: checks.Positive = 0.01
    energy_start: checks.Share = 0.95
    energy_end: checks.Share = 0.98
    ramp_rounds: checks.AtLeastOne = 100  # rounds over which the threshold rises (the paper: all)
    #: the server's average of the updates: by sample count (FedAvg) or plain (HtFLlib)
    weighting: Literal["samples", "clients"] = "samples"


def energy_at(round_number: int, start: float, end: float, ramp_rounds: int) -> float:
    """The energy threshold of round ``round_number`` (1-based): start, rising linearly to end."""
    progress = min(max(round_number - 1, 0) / ramp_rounds, 1.0)
    return start + progress * (end - start)


def energy_rank(singular_values: np.ndarray, energy: float) -> int:
    """The fewest leading singular values whose squares keep ``energy`` of the total (>= 1)."""
    squares = np.square(np.asarray(singular_values, dtype=np.float64))
    total = squares.sum()
    if total <= 0:
        return 1
    kept = np.cumsum(squares) / total
    return min(int(np.searchsorted(kept, energy - 1e-12)) + 1, len(squares))


def compress(arrays: dict[str, np.ndarray], energy: float) -> Payload:
    """SVD-truncate every matrix (ndim >= 2, flattened to ``rows x rest``) at ``energy``.

    A matrix is sent as ``name:u``, ``name:s``, ``name:v`` when that is smaller than the dense
    matrix, else dense (as ``rows x rest``); vectors and scalars are sent as they are.
    """
    out: Payload = {}
    for name, value in arrays.items():
        value = np.asarray(value, dtype=np.float32)
        if value.ndim < 2:
            out[name] = value
            continue
        matrix = value.reshape(value.shape[0], -1)
        rows, cols = matrix.shape
        if min(rows, cols) == 1:
            out[name] = matrix
            continue
        u, s, vt = np.linalg.svd(matrix.astype(np.float64), full_matrices=False)
        r = energy_rank(s, energy)
        if r * (rows + cols + 1) >= rows * cols:
            out[name] = matrix
            continue
        out[name + ":u"] = u[:, :r].astype(np.float32)
        out[name + ":s"] = s[:r].astype(np.float32)
        out[name + ":v"] = vt[:r].astype(np.float32)
    return out


def decompress(payload: Payload) -> dict[str, np.ndarray]:
    """Undo :func:`compress` (matrices come back as ``rows x rest``); drops the metadata."""
    out: dict[str, np.ndarray] = {}
    for key, value in payload.items():
        if key in _META or key.endswith((":s", ":v")):
            continue
        if key.endswith(":u"):
            name = key[:-2]
            out[name] = (value * payload[name + ":s"]) @ payload[name + ":v"]
        else:
            out[key] = value
    return out


def float_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's floating-point state (parameters and float buffers), by name."""
    return {k: v for k, v in module.state_dict().items() if v.is_floating_point()}


class FedKDClient(ClientSide):
    max_grad_norm = 10.0  # as HtFLlib, against divergence on some tasks

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        p = self.params
        self.mentee = self.add_module(
            self.build_shared_model(p.shared_arch), learning_rate=p.mentee_learning_rate
        )
        self.hidden_map = self.add_module(
            nn.Linear(self.mentee.feature_dim, self.model.feature_dim, bias=False)
        )
        self.synced = {k: v.detach().clone() for k, v in float_state(self.mentee).items()}
        self.version = 0
        self.energy = p.energy_start

    def receive(self, download: Payload) -> None:
        if VERSION not in download:
            return
        version = int(scalar(download[VERSION]))
        if version == self.version:  # already applied (evaluate, then train, carry the same)
            return
        if version != self.version + 1:
            raise RuntimeError(
                f"fedkd: global mentee update {version} arrived after {self.version}; "
                "missed updates cannot be recovered"
            )
        update = decompress(download)
        with torch.no_grad():
            for name, value in self.synced.items():
                value += torch.from_numpy(update[name]).reshape(value.shape).to(value.device)
            state = self.mentee.state_dict()
            for name, value in self.synced.items():
                state[name].copy_(value)
        self.version = version
        self.energy = scalar(download[ENERGY])

    def training_loss(self, x, y):
        rep_t, out_t = self.model.forward_with_features(x)
        rep_s, out_s = self.mentee.forward_with_features(x)
        ce_t, ce_s = F.cross_entropy(out_t, y), F.cross_entropy(out_s, y)
        kd_t, kd_s = mutual_kd_losses(out_t, out_s)
        mapped = self.hidden_map(rep_s)
        hidden_t = F.mse_loss(rep_t, mapped.detach())
        hidden_s = F.mse_loss(rep_t.detach(), mapped)
        adaptive = 1.0 / (ce_t + ce_s).detach().clamp(min=1e-8)
        return ce_t + ce_s + adaptive * (kd_t + hidden_t + kd_s + hidden_s)

    def upload(self) -> Payload:
        delta = {
            k: (v.detach() - self.synced[k]).cpu().numpy()
            for k, v in float_state(self.mentee).items()
        }
        payload = compress(delta, self.energy)
        payload[BASE_VERSION] = np.array(self.version, dtype=np.int64)
        return payload


class FedKDServer(ServerSide):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.version = 0
        self.rounds = 0
        self.download: Payload = {}

    def energy(self, round_number: int) -> float:
        p = self.params
        return energy_at(round_number, p.energy_start, p.energy_end, p.ramp_rounds)

    def global_payload(self) -> Payload:
        return self.download

    def merge(self, uploads: list[Upload]) -> None:
        current = [u for u in uploads if int(scalar(u.payload[BASE_VERSION])) == self.version]
        if not current:
            return
        self.rounds += 1
        update = weighted_average(
            [decompress(u.payload) for u in current],
            average_weights(current, self.params.weighting),
        )
        self.version += 1
        self.download = compress(update, self.energy(self.rounds))
        self.download[VERSION] = np.array(self.version, dtype=np.int64)
        self.download[ENERGY] = np.array(self.energy(self.rounds + 1), dtype=np.float32)


def declared_upload_bytes(params, num_classes, feature_dim, model_bytes, input_shape=None) -> int:
    """An upper bound: the dense update (compression only ever sends fewer bytes) + version."""
    model = build_model(
        params.shared_arch, tuple(input_shape or DEFAULT_INPUT_SHAPE), num_classes, feature_dim
    )
    return sum(v.numel() * v.element_size() for v in float_state(model).values()) + 8


METHOD = Method(
    name="fedkd",
    params=FedKDParams,
    client=FedKDClient,
    server=FedKDServer,
    declared_upload_bytes=declared_upload_bytes,
    summary="mentee update, SVD-compressed; average, recompress",
)
