"""One training round of a method in one process, without Flower (tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from htfl.algorithms.base import ClientSide, Payload, ServerSide, Upload


def run_round(
    server: ServerSide,
    clients: Sequence[ClientSide],
    wire: Callable[[Payload], Payload] = lambda payload: payload,
) -> list[Upload]:
    """One training round as the ServerApp drives it, in one process and without Flower:
    every client receives the global knowledge, trains and uploads; the server aggregates.

    For tests and benchmarks that study a method rather than the testbed; ``wire`` stands for
    the message boundary (e.g. Flower's encoding and back). Returns the uploads.
    """
    download = wire(server.global_payload())
    uploads = []
    for client in clients:
        client.receive(download)
        client.train()
        shard = client.shard
        uploads.append(
            Upload(shard.client_index, shard.num_train, wire(client.upload()), shard.label_counts())
        )
    server.aggregate(uploads)
    return uploads


def evaluate_round(server: ServerSide, clients: Sequence[ClientSide]) -> float:
    """Every client receives the global knowledge and evaluates; the sample-weighted accuracy
    over their test splits, as the round loop reports it."""
    download = server.global_payload()
    correct = total = 0.0
    for client in clients:
        client.receive(download)
        result = client.evaluate()
        correct += result.accuracy * result.num_samples
        total += result.num_samples
    return correct / max(total, 1)
