"""Bandwidth: the bytes htfl records are the object bodies Flower moves for a message, the same
on the device and on the server, and every method's real upload matches its declared payload
within the framing overhead."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Message, Metadata

from htfl import protocol
from htfl.algorithms import METHODS, get_method
from tests.algorithms.conftest import (
    DEVICE_NODE,
    FEATURE_DIM,
    RUN_ID,
    SERVER_NODE,
    instruction,
    make_clients,
    method_params,
    reply_to,
    run_round,
)
from tests.support.flower_wire import (
    RecordingSuperLink,
    grid_pull,
    grid_push,
    pull_message,
    push_reply,
)

#: Flower's chunk size: an array above it is sent as several ArrayChunk objects.
CHUNK = 5 * 1024 * 1024
METRICS = {"train_seconds": 1.25, "train_loss": 0.5, "num_train": 60.0, "handle_seconds": 1.3}


def awkward_payload() -> dict[str, np.ndarray]:
    """Identical arrays (deduplicated), zero chunks, and a chunk shared by two big arrays."""
    big_a = np.zeros(CHUNK // 4 + 3, np.float32)
    big_b = big_a.copy()  # same npy header and first 5 MB chunk; the second chunk differs
    big_b[-1] = 1.0
    return {
        "a": np.arange(10, dtype=np.float32),
        "same1": np.ones((3, 4), np.float32),
        "same2": np.ones((3, 4), np.float32),
        "n": np.array(7, np.int64),
        "big_a": big_a,
        "big_b": big_b,
    }


def test_upload_bytes_are_the_bodies_the_supernode_pushes() -> None:
    ins = instruction(protocol.content(config={"round": 1}, payload={}))
    reply = reply_to(ins, protocol.content(None, awkward_payload(), METRICS))
    moved = push_reply(reply)
    assert moved.counted == moved.body_bytes(leave_out=reply.metadata.message_id)
    ids = [oid for oid, _ in moved.bodies]
    assert len(ids) == len(set(ids))  # each distinct object once
    assert moved.counted < protocol.payload_nbytes(awkward_payload())  # shared chunk once


def test_download_bytes_are_the_bodies_the_supernode_pulls() -> None:
    ins = instruction(protocol.content(config={"round": 1}, payload=awkward_payload()))
    moved = pull_message(ins, DEVICE_NODE)
    assert moved.counted == moved.body_bytes(leave_out=ins.metadata.message_id)
    # the chunk shared by two arrays is pulled twice but pushed once
    up = push_reply(reply_to(ins, protocol.content(None, awkward_payload(), None)))
    assert moved.counted - up.counted > 0.99 * CHUNK


def test_the_server_grid_counts_what_the_device_moves() -> None:
    ins = instruction(protocol.content(config={"round": 1}, payload=awkward_payload()))
    reply = reply_to(ins, protocol.content(None, awkward_payload(), METRICS))
    (sent,) = grid_push([ins])
    assert sent == pull_message(ins, DEVICE_NODE).counted
    assert grid_pull(reply) == push_reply(reply).counted


def to_node(node: int, content) -> Message:
    """One device's copy of a broadcast (``Grid.push_messages`` sets the id the same way)."""
    metadata = Metadata(RUN_ID, "", SERVER_NODE, node, "", "", 1.0e9, 3600.0, "train", 1, None)
    message = Message(content=content, metadata=metadata)
    message.metadata.__dict__["_message_id"] = message.object_id
    return message


def test_a_broadcast_is_pushed_once_and_counted_for_every_device() -> None:
    payload = {"w": np.arange(100_000, dtype=np.float32)}
    messages = [to_node(100 + i, protocol.content({"round": 1}, payload)) for i in range(3)]
    superlink = RecordingSuperLink()
    counts = grid_push(messages, superlink)
    assert len(set(counts)) == 1 and counts[0] > 400_000
    assert sum(len(body) for _, body in superlink.pushed) < 1.5 * counts[0]  # array once
    # the SuperLink already holds the array: a second push sends less, counts the same
    again = [instruction(protocol.content(config={"round": 2}, payload=payload))]
    assert grid_push(again, superlink) == [pull_message(again[0], DEVICE_NODE).counted]


def test_identical_arrays_in_one_message_travel_once() -> None:
    ins = instruction(protocol.content(payload={}))
    one = push_reply(reply_to(ins, protocol.content(payload={"x": np.ones(50_000)}))).counted
    two = push_reply(
        reply_to(ins, protocol.content(payload={"x": np.ones(50_000), "y": np.ones(50_000)}))
    ).counted
    assert two - one < 200  # a second name in the record, not a second 400 KB array


#: Framing allowed around the arrays: per message (records, metrics) and per array
#: (npy header, Array/ArrayChunk headers and the ids of their children).
PER_MESSAGE, PER_ARRAY = 1500, 1000


@pytest.mark.parametrize("name", sorted(METHODS))
def test_real_upload_matches_the_declared_payload(name: str, generator_file) -> None:
    method = get_method(name)
    params = method_params(
        name,
        generator_file,
        **({"server_epochs": 2} if "server_epochs" in method.params.__dataclass_fields__ else {}),
    )
    clients = make_clients(name, params)
    server = method.server(params, 10, FEATURE_DIM, seed=1)
    run_round(server, clients)
    uploads = run_round(server, clients)  # a steady-state round (FedGen's counts went in round 1)
    client, upload = clients[0], uploads[0].payload
    model_bytes = sum(v.numel() * v.element_size() for v in client.model.state_dict().values())
    declared = method.declared_upload_bytes(
        params, 10, FEATURE_DIM, model_bytes, input_shape=client.shard.input_shape
    )
    raw = protocol.payload_nbytes(upload)
    if name == "fedkd":  # compressed: the declared size is the dense upper bound
        assert 0 < raw < declared
    else:
        assert raw == declared
    train = instruction(protocol.content(config={"round": 2}, payload=server.global_payload()))
    reply = reply_to(train, protocol.content(None, upload, METRICS))
    wire = push_reply(reply).counted
    assert raw < wire <= raw + PER_MESSAGE + PER_ARRAY * len(upload)
    if declared >= 100_000 and name != "fedkd":
        assert wire / declared <= 1.05
