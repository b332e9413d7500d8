"""One training round of a method in one process, without Flower (tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from htfl.algorithms.base import ClientSide, EvalResult, Payload, ServerSide, Upload


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


def evaluate_clients(server: ServerSide, clients: Sequence[ClientSide]) -> list[EvalResult]:
    """Every client receives the global knowledge and evaluates; their results, in order."""
    download = server.global_payload()
    results = []
    for client in clients:
        client.receive(download)
        results.append(client.evaluate())
    return results


def evaluate_round(server: ServerSide, clients: Sequence[ClientSide]) -> float:
    """The sample-weighted accuracy over the clients' test splits after the global download,
    as the round loop reports it."""
    correct = total = 0.0
    for result in evaluate_clients(server, clients):
        correct += result.accuracy * result.num_samples
        total += result.num_samples
    return correct / max(total, 1)
