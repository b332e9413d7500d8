"""Fixtures for the method tests: real client sides on digits shards, a generator file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from htfl.algorithms import fedktl, get_method
from htfl.algorithms.base import ClientSide, TrainSettings, Upload
from htfl.datasets import PartitionSpec, client_shard
from htfl.models import build_model
from tests.support import rounds

#: Three architectures, as on a heterogeneous fleet (FedAvg takes the first for everyone).
ARCHS = ("cnn4", "resnet4", "resnet6")
FEATURE_DIM = 32
SETTINGS = TrainSettings(batch_size=16, learning_rate=0.05, momentum=0.9)


@pytest.fixture(autouse=True)
def _every_test_on_one_torch_thread(one_torch_thread):
    """tests/conftest.py's one_torch_thread for every algorithm test."""


@pytest.fixture(scope="session")
def generator_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small *untrained* generator written in FedKTL's format (no weights can be downloaded)."""
    path = tmp_path_factory.mktemp("generator") / "generator.pt"
    fedktl.save_generator(fedktl.example_generator(seed=0), path)
    return path


def method_params(name: str, generator: Path, **overrides):
    method = get_method(name)
    if name == "fedktl":
        overrides.setdefault("generator_path", str(generator))
    return method.params(**overrides)


def make_clients(
    name: str, params, num_clients: int = 3, feature_dim: int = FEATURE_DIM, seed: int = 1
) -> list[ClientSide]:
    """Client sides on a Dirichlet split of digits, built the way the device runtime does.

    The split is over ``4 * num_clients`` clients (of which the first ``num_clients`` take
    part), so each shard is small and a round takes well under a second.
    """
    method = get_method(name)
    spec = PartitionSpec("dirichlet", alpha=0.5)
    clients = []
    for i in range(num_clients):
        shard = client_shard("digits", spec, 4 * num_clients, i, seed)
        torch.manual_seed(seed)
        arch = ARCHS[0] if method.homogeneous else ARCHS[i % len(ARCHS)]
        model = build_model(arch, shard.input_shape, shard.num_classes, feature_dim)
        clients.append(method.client(model, shard, SETTINGS, params, seed + i))
    return clients


def through_the_wire(payload: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A payload as the other side reads it: encoded by ``protocol.content``, deflated into
    Flower's objects, inflated again and read by ``protocol.read_payload``."""
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
    from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents

    from htfl import protocol

    content = protocol.content(payload=payload)
    blobs = {oid: obj.deflate() for oid, obj in get_all_nested_objects(content).items()}
    inflated = inflate_object_from_contents(content.object_id, blobs)
    return protocol.read_payload(instruction(inflated))


def run_round(server, clients: list[ClientSide]) -> list[Upload]:
    """One round as the ServerApp runs it: download, train, upload, aggregate, evaluate; every
    payload goes through Flower's encoding."""
    uploads = rounds.run_round(server, clients, through_the_wire)
    evaluation = through_the_wire(server.global_payload())
    for client in clients:
        client.receive(evaluation)
    return uploads


def snapshot(payload) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in payload.items()}


# --- real Flower messages, as the ServerApp and a device build them ---------------------------
#: Typical identifiers: Flower's run and node ids are random 63/64-bit integers.
RUN_ID = 7_305_512_944_101_337_111
SERVER_NODE, DEVICE_NODE = 1, 12_754_901_843_201_554_733


def instruction(content, message_type: str = "train", run_id: int = RUN_ID):
    """A message from the ServerApp to the device (what ``Grid.push_messages`` sends)."""
    from flwr.app import Message, Metadata

    metadata = Metadata(
        run_id, "", SERVER_NODE, DEVICE_NODE, "", "", 1.0e9, 3600.0, message_type, 1, None
    )
    message = Message(content=content, metadata=metadata)
    message.metadata.__dict__["_message_id"] = message.object_id
    return message


def reply_to(message, content):
    """The device's reply (``Message(content, reply_to=...)``, as the client runtime builds it)."""
    from flwr.app import Message

    return Message(content, reply_to=message)
