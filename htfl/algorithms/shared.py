"""Pieces of the methods that keep a small *shared* model beside each private model
(FML, FedKD, FedMRL): its declared size and the averaging server."""

from __future__ import annotations

from htfl.algorithms.aggregate import weighted_average
from htfl.algorithms.base import DEFAULT_INPUT_SHAPE, Payload, ServerSide, Upload
from htfl.models import build_model


def shared_model_bytes(
    arch: str, input_shape: tuple[int, ...] | None, num_classes: int, feature_dim: int
) -> int:
    """Bytes of a shared model's full state (parameters and buffers)."""
    model = build_model(arch, tuple(input_shape or DEFAULT_INPUT_SHAPE), num_classes, feature_dim)
    return sum(v.numel() * v.element_size() for v in model.state_dict().values())


def average_weights(uploads: list[Upload], weighting: str = "samples") -> list[float]:
    """Each upload's weight: its sample count (FedAvg, ``"samples"``) or 1 (``"clients"``:
    HtFLlib's plain mean, ``1/len(self.uploaded_ids)`` in its FML, FedKD and FedMRL servers)."""
    return [1.0 if weighting == "clients" else float(u.num_samples) for u in uploads]


class SharedModelServer(ServerSide):
    """Keeps the shared model as the average of the uploaded ones: sample-weighted (FedAvg) or,
    with the method's ``weighting = "clients"``, a plain mean."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.shared: Payload = {}

    def global_payload(self) -> Payload:
        return self.shared

    def merge(self, uploads: list[Upload]) -> None:
        if uploads:
            self.shared = weighted_average(
                [u.payload for u in uploads],
                average_weights(uploads, getattr(self.params, "weighting", "samples")),
            )
