"""The device side keeps each run's private model and optimizer state between rounds."""

from __future__ import annotations

import time

import pytest
import torch
from flwr.app import Message
from flwr.supercore.task_identity import TaskIdentity

from htfl import protocol
from htfl.device.client_runtime import ClientRuntime
from htfl.device.instruments import TaskTiming

RUN_ID = 42


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    # Messages outside a Flower process take their run id from TaskIdentity.
    for name, value in (("_run_id", RUN_ID), ("_node_id", 1), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value, raising=False)


def msg(kind: str, config: dict | None = None, payload=None) -> Message:
    return Message(
        protocol.content(config=config or {}, payload=payload), dst_node_id=1, message_type=kind
    )


def call(runtime: ClientRuntime, message: Message) -> Message:
    now = time.time()
    return runtime(message, None, TaskTiming(now, 0.0, 0.0, now))


SETUP = {
    "algorithm": "fedproto",
    "params": {"lamda": 1.0},
    "dataset": "digits",
    "partition": {
        "kind": "iid",
        "classes_per_client": 2,
        "alpha": 0.1,
        "min_samples": 10,
        "balanced": True,
    },
    "train_fraction": 0.75,
    "num_clients": 3,
    "client_index": 0,
    "seed": 0,
    "feature_dim": 32,
    "arch": "cnn4",
    "training": {
        "local_epochs": 1,
        "batch_size": 32,
        "learning_rate": 0.05,
        "momentum": 0.9,
        "weight_decay": 0.0,
    },
}


def test_private_model_and_optimizer_survive_between_rounds() -> None:
    runtime = ClientRuntime("jetson-nano", "nano-01", torch_threads=1)
    reply = call(runtime, msg(protocol.SETUP, SETUP))
    assert protocol.read_metrics(reply)["num_train"] > 0
    state = runtime.runs[RUN_ID]

    call(runtime, msg(protocol.TRAIN, {"round": 1}, {}))
    after_one = {k: v.clone() for k, v in state.client.model.state_dict().items()}
    momentum = [s["momentum_buffer"].clone() for s in state.client.optimizer.state.values()]
    assert momentum, "SGD with momentum keeps a buffer per parameter"

    reply = call(runtime, msg(protocol.TRAIN, {"round": 2}, {}))
    assert runtime.runs[RUN_ID] is state  # same client side, same model object
    after_two = state.client.model.state_dict()
    assert any(not torch.equal(after_one[k], after_two[k]) for k in after_one)
    buffers = [s["momentum_buffer"] for s in state.client.optimizer.state.values()]
    assert any(not torch.equal(a, b) for a, b in zip(momentum, buffers, strict=True))
    upload = protocol.read_payload(reply)
    assert upload["prototypes"].shape == (10, 32)
    assert protocol.read_metrics(reply)["train_seconds"] > 0


def test_messages_out_of_order_are_refused_clearly() -> None:
    runtime = ClientRuntime("jetson-nano", "nano-01")
    with pytest.raises(protocol.ProtocolError, match=f"run {RUN_ID}: train before train.setup"):
        call(runtime, msg(protocol.TRAIN, {"round": 1}, {}))
    with pytest.raises(protocol.ProtocolError, match="unknown message type 'query.nope'"):
        call(runtime, msg("query.nope"))
