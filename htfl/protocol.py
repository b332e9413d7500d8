"""The messages between the htfl ServerApp and a device agent, and how they are encoded.

A message's content is a Flower RecordDict with up to three records: ``config`` (scalars and
strings), ``payload`` (the method's named float arrays) and ``metrics`` (numbers the device
measured). Message types:

* ``query.ping``  -> an empty reply (round-trip and overhead measurements);
* ``query.hello`` -> the device's class, name and software versions, and its clock;
* ``train.setup`` -> the model assignment, data partition, method and hyperparameters;
* ``train``       -> global knowledge in; the device optionally evaluates, trains, and uploads;
* ``evaluate``    -> global knowledge in; the device evaluates only.

How many bytes a message puts on the wire is counted where Flower moves it, not here (see
``htfl.flower_adapter``): serialising a message a second time to size it cost as much as
sending it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

PING = "query.ping"
HELLO = "query.hello"
SETUP = "train.setup"
TRAIN = "train"
EVALUATE = "evaluate"

Payload = dict[str, np.ndarray]


class ProtocolError(ValueError):
    """A message did not have the shape this protocol promises; names what was wrong."""


def content(
    config: dict[str, Any] | None = None,
    payload: Payload | None = None,
    metrics: dict[str, float] | None = None,
) -> RecordDict:
    records: dict[str, Any] = {}
    if config is not None:
        records["config"] = _config_record(config)
    if payload is not None:
        records["payload"] = ArrayRecord(
            {k: Array(np.ascontiguousarray(v)) for k, v in payload.items()}
        )
    if metrics is not None:
        records["metrics"] = MetricRecord({k: float(v) for k, v in metrics.items()})
    return RecordDict(records)


def _config_record(config: dict[str, Any]) -> ConfigRecord:
    return ConfigRecord({"json": json.dumps(config)})


def replace_config(message: Message, config: dict[str, Any]) -> None:
    """Rewrite ``message``'s config in place (the inverse of :func:`read_config`)."""
    message.content.config_records["config"] = _config_record(config)


def read_config(message: Message) -> dict[str, Any]:
    try:
        return json.loads(str(message.content.config_records["config"]["json"]))
    except (KeyError, json.JSONDecodeError) as err:
        raise ProtocolError(
            f"{message.metadata.message_type} message has no config: {err}"
        ) from None


def read_payload(message: Message) -> Payload:
    records = message.content.array_records
    if "payload" not in records:
        return {}
    try:
        return {k: arr.numpy() for k, arr in records["payload"].items()}
    except Exception as err:
        raise ProtocolError(
            f"{message.metadata.message_type} payload is malformed: {err}"
        ) from None


def read_metrics(message: Message) -> dict[str, float]:
    records = message.content.metric_records
    if "metrics" not in records:
        return {}
    return {k: float(v) for k, v in records["metrics"].items()}  # type: ignore[arg-type]


def payload_nbytes(payload: Payload) -> int:
    """The raw size of a payload's arrays (what a method declares it sends)."""
    return int(sum(np.asarray(v).nbytes for v in payload.values()))
