"""The device side keeps each run's private model and optimizer state between rounds."""

from __future__ import annotations

import pytest
import torch

from htfl import protocol
from htfl.device.client_runtime import ClientRuntime
from tests.support.device_runtime import RUN_ID, SETUP, call, msg, pin_task_identity


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    pin_task_identity(monkeypatch)


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
