"""Bandwidth: ``protocol.content_bytes`` is what Flower sends, and every method's real upload
matches its declared payload within the framing overhead."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from flwr.proto.message_pb2 import ObjectTree, PullObjectResponse, PushObjectResponse
from flwr.proto.node_pb2 import Node
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, get_object_tree
from flwr.supercore.inflatable.inflatable_protobuf_utils import make_push_object_fn_protobuf
from flwr.supercore.inflatable.inflatable_utils import push_objects
from flwr.supercore.object_store.in_memory_object_store import InMemoryObjectStore

from htfl import protocol
from htfl.algorithms import METHODS, get_method
from tests.algorithms.conftest import (
    FEATURE_DIM,
    instruction,
    make_clients,
    method_params,
    reply_to,
    run_round,
)

#: Flower's chunk size: an array above it is sent as several ArrayChunk objects.
CHUNK = 5 * 1024 * 1024
METRICS = {"train_seconds": 1.25, "train_loss": 0.5, "num_train": 60.0, "handle_seconds": 1.3}


def branch_bytes(tree: ObjectTree) -> int:
    """Bytes the content's branch adds to the message's ObjectTree."""
    return tree.ByteSize() - ObjectTree(object_id=tree.object_id).ByteSize()


def flower_push_bytes(message) -> int:
    """Run Flower's own push path for the content and add up the requests it builds."""
    sizes: list[int] = []

    def push(request):
        sizes.append(request.ByteSize())
        return PushObjectResponse(stored=True)

    objects = dict(get_all_nested_objects(message.content))
    node = Node(node_id=message.metadata.src_node_id)
    fn = make_push_object_fn_protobuf(push, node, message.metadata.run_id, str(uuid.uuid4()))
    push_objects(objects, fn, keep_objects=True)
    return sum(sizes) + branch_bytes(get_object_tree(message))


def flower_pull_bytes(message) -> int:
    """Ask a SuperNode's object store what it would pull, and size the responses."""
    tree = get_object_tree(message)
    to_pull = InMemoryObjectStore().preregister(message.metadata.run_id, tree)
    objects = get_all_nested_objects(message)
    return branch_bytes(tree) + sum(
        PullObjectResponse(
            object_found=True, object_available=True, object_content=objects[oid].deflate()
        ).ByteSize()
        for oid in to_pull
        if oid != message.object_id
    )


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


def test_upload_bytes_are_the_requests_flower_pushes() -> None:
    ins = instruction(protocol.content(config={"round": 1}, payload={}))
    reply = reply_to(ins, protocol.content(None, awkward_payload(), METRICS))
    assert protocol.content_bytes(reply) == flower_push_bytes(reply)


def test_download_bytes_are_the_responses_a_supernode_pulls() -> None:
    ins = instruction(protocol.content(config={"round": 1}, payload=awkward_payload()))
    assert protocol.content_bytes(ins) == flower_pull_bytes(ins)
    # the chunk shared by two arrays is pulled twice but pushed once
    reply = reply_to(ins, protocol.content(None, awkward_payload(), None))
    assert protocol.content_bytes(ins) - protocol.content_bytes(reply) > 0.99 * CHUNK


def test_identical_arrays_in_one_message_travel_once() -> None:
    ins = instruction(protocol.content(payload={}))
    one = protocol.content_bytes(reply_to(ins, protocol.content(payload={"x": np.ones(50_000)})))
    two = protocol.content_bytes(
        reply_to(ins, protocol.content(payload={"x": np.ones(50_000), "y": np.ones(50_000)}))
    )
    assert two - one < 200  # a second name in the record, not a second 400 KB array


#: Framing allowed around the arrays: per message (records, metrics) and per array
#: (npy header, Array/ArrayChunk headers, object ids in requests and tree).
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
    wire = protocol.content_bytes(reply)
    assert raw < wire <= raw + PER_MESSAGE + PER_ARRAY * len(upload)
    if declared >= 100_000 and name != "fedkd":
        assert wire / declared <= 1.05
