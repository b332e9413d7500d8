"""Local: every client trains alone; nothing is exchanged (the lower baseline)."""

from __future__ import annotations

from htfl.algorithms.base import ClientSide, Method, NoParams, Payload, ServerSide, Upload


class LocalClient(ClientSide):
    def upload(self) -> Payload:
        return {}


class LocalServer(ServerSide):
    def global_payload(self) -> Payload:
        return {}

    def merge(self, uploads: list[Upload]) -> None:
        return None


METHOD = Method(
    name="local",
    params=NoParams,
    client=LocalClient,
    server=LocalServer,
    declared_upload_bytes=lambda params, num_classes, feature_dim, model_bytes, **_: 0,
    summary="no exchange",
)
