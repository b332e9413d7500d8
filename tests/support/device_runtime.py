"""Driving a device's ClientRuntime with real protocol messages, outside a Flower process."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flwr.app import Message
from flwr.supercore.task_identity import TaskIdentity

from htfl import protocol
from htfl.device.client_runtime import ClientRuntime
from htfl.device.instruments import TaskTiming

RUN_ID = 42

#: a small setup message: FedProto on an IID digits split, cnn4, one local epoch
SETUP: dict[str, Any] = {
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


def pin_task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages outside a Flower process take their run id from TaskIdentity."""
    for name, value in (("_run_id", RUN_ID), ("_node_id", 1), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value, raising=False)


def msg(kind: str, config: dict | None = None, payload: Any = None) -> Message:
    return Message(
        protocol.content(config=config or {}, payload=payload), dst_node_id=1, message_type=kind
    )


def call(runtime: ClientRuntime, message: Message) -> Message:
    now = time.time()
    return runtime(message, None, TaskTiming(now, 0.0, 0.0, now))
