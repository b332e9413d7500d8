"""LG-FedAvg (Liang et al., 2020, "Think locally, act globally"): local representations,
one global head.

Client: trains its whole private model with cross-entropy; the feature extractor stays on the
device, the linear head ``d -> classes`` is uploaded. Server: the sample-weighted average of the
heads (FedAvg over the global layers). Download: the global head, which replaces the client's
head before evaluation and the next round's training. Before any upload the server hands out a
head initialised from the experiment seed, so every client starts from the same one (HtFLlib
uses client 0's initial head).

Matches HtFLlib's ``clientlg.py`` / ``serverlg.py``.
"""

from __future__ import annotations

from htfl.algorithms.aggregate import weighted_average
from htfl.algorithms.base import ClientSide, Method, NoParams, Payload, ServerSide, Upload
from htfl.algorithms.state import head_payload, linear_bytes, load_module_payload, seeded_head

HEAD = "head."


class HeadSharingClient(ClientSide):
    """Client of the methods that exchange the head: load the global one, upload its own."""

    def receive(self, download: Payload) -> None:
        load_module_payload(self.model.head, download, HEAD)

    def upload(self) -> Payload:
        return head_payload(self.model.head, HEAD)


class HeadAveragingServer(ServerSide):
    """Keeps the global head: seeded at first, then the sample-weighted mean of the uploads."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.head: Payload = head_payload(
            seeded_head(self.feature_dim, self.num_classes, self.seed), HEAD
        )

    def global_payload(self) -> Payload:
        return self.head

    def merge(self, uploads: list[Upload]) -> None:
        if uploads:
            heads = [{k: u.payload[k] for k in self.head} for u in uploads]
            self.head = weighted_average(heads, [u.num_samples for u in uploads])


def head_bytes(params, num_classes, feature_dim, model_bytes, **_) -> int:
    return linear_bytes(feature_dim, num_classes)


METHOD = Method(
    name="lg_fedavg",
    params=NoParams,
    client=HeadSharingClient,
    server=HeadAveragingServer,
    declared_upload_bytes=head_bytes,
    summary="local extractors, sample-weighted average of the heads",
    exchanges_head=True,
)
