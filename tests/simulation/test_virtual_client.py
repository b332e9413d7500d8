"""A virtual client handles setup, train and evaluate with the device's own ClientRuntime, keeps
its private model between messages under either state policy (the Context's state in memory,
or a file), and replies with figures modelled from its class, marked as such. No Ray here:
the messages go straight to the ClientApp's handler, as Flower's actor would pass them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from htfl import protocol
from htfl.devices import device_class
from htfl.workstation.simulation.clientapp import (
    VirtualClient,
    VirtualFleet,
    virtual_devices,
    wire_bytes,
)

RUN_ID = 42
SETUP = {
    "algorithm": "fedproto",
    "params": {"lamda": 1.0},
    "dataset": "digits",
    "partition": {"kind": "iid", "classes_per_client": 2, "alpha": 0.1, "min_samples": 10},
    "train_fraction": 0.75,
    "num_clients": 3,
    "client_index": 1,
    "seed": 0,
    "feature_dim": 16,
    "arch": "cnn4",
    "experiment_id": "sim-unit",
    "training": {"local_epochs": 1, "batch_size": 32, "learning_rate": 0.05, "momentum": 0.9},
}


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    # Messages outside a Flower process take their run id from TaskIdentity.
    for name, value in (("_run_id", RUN_ID), ("_node_id", 1), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value, raising=False)


def msg(kind: str, config: dict) -> Message:
    return Message(protocol.content(config=config, payload={}), dst_node_id=1, message_type=kind)


@pytest.mark.parametrize("policy", ["memory", "disk"])
def test_state_survives_between_messages_and_figures_are_modelled(
    policy: str, tmp_path: Path
) -> None:
    fleet = VirtualFleet(
        tuple(virtual_devices({"jetson-nano": 1, "jetson-agx-orin": 1}, 2)),
        policy,
        str(tmp_path / "state"),
        str(tmp_path / "data"),
    )
    context = Context(RUN_ID, 7, {"partition-id": 1}, RecordDict(), {})

    sizes: dict[str, tuple[int, int]] = {}

    def handle(kind: str, config: dict) -> dict[str, float]:
        # a fresh client object per message, as on an actor that may never have seen it
        message = msg(kind, config)
        reply = VirtualClient(fleet, context).handle(message)
        assert not reply.has_error(), reply.error
        sizes[kind] = (wire_bytes(message), wire_bytes(reply))
        return protocol.read_metrics(reply)

    handle(protocol.SETUP, SETUP)
    client = VirtualClient(fleet, context)
    client.restore(RUN_ID)
    model = client.runtime.runs[RUN_ID].client.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # a wall-clock deadline long past: a virtual client is judged on modelled time instead
    train = handle(protocol.TRAIN, {"round": 1, "deadline_seconds": 1e-9})
    client.restore(RUN_ID)
    after = client.runtime.runs[RUN_ID].client.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "training was kept"
    evaluate = handle(protocol.EVALUATE, {})
    assert 0.0 <= evaluate["test_accuracy"] <= 1.0

    orin = device_class("jetson-agx-orin").profile  # partition 1 is the second class
    assert train["modelled"] == 1.0
    host = train["host_train_seconds"]
    assert train["train_seconds"] == pytest.approx(host / orin.relative_speed)
    assert train["train_seconds"] == pytest.approx(train["train_steps"] * train["step_seconds"])
    assert train["energy_joules"] >= orin.busy_watts * train["train_seconds"]
    assert train["download_seconds"] >= orin.link_latency_ms / 1000
    assert train["modelled_round_seconds"] == pytest.approx(
        train["download_seconds"] + train["train_seconds"] + train["upload_seconds"]
    )
    # the bytes each way are the messages' own, as a deployment would move them, and the
    # modelled transfers are those bytes over the class's link
    for kind, figures in ((protocol.TRAIN, train), (protocol.EVALUATE, evaluate)):
        down, up = sizes[kind]
        assert figures["modelled"] == 1.0
        assert (figures["modelled_bytes_down"], figures["modelled_bytes_up"]) == (down, up)
        for seconds, size in ((figures["download_seconds"], down), (figures["upload_seconds"], up)):
            assert seconds == pytest.approx(
                size * 8 / (orin.link_mbit_s * 1e6) + orin.link_latency_ms / 1000
            )
    # FedProto uploads its class prototypes: 10 digits x 16 features of float32 at least
    assert sizes[protocol.TRAIN][1] > 10 * 16 * 4
    stored = context.state.config_records["htfl"]
    if policy == "memory":
        assert isinstance(stored["state"], bytes) and not (tmp_path / "state").exists()
    else:
        assert "state" not in stored
        assert (tmp_path / "state" / "jetson-agx-orin-01.pt").stat().st_size > 0


def test_wire_bytes_are_what_flower_would_move_for_the_message() -> None:
    # Flower's own walk over a message's objects (what its Grid pushes) is the reference
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

    payload = {"w": np.ones((300, 50), dtype=np.float32), "c": np.arange(7, dtype=np.int64)}
    message = Message(
        protocol.content(config={"round": 3}, payload=payload, metrics={"x": 1.0}),
        dst_node_id=1,
        message_type=protocol.TRAIN,
    )
    objects = get_all_nested_objects(message)
    objects.pop(message.object_id)  # the metadata object: not content
    assert wire_bytes(message) == sum(len(o.deflate()) for o in objects.values())
    # the arrays' raw bytes, plus what serialising them and the records adds
    raw = protocol.payload_nbytes(payload)
    assert raw < wire_bytes(message) < raw + 4096
    assert 0 < wire_bytes(msg(protocol.EVALUATE, {})) < 1024
