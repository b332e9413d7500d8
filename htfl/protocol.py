"""The messages between the htfl ServerApp and a device agent, and how they are encoded.

A message's content is a Flower RecordDict with up to three records: ``config`` (scalars and
strings), ``payload`` (the method's named float arrays) and ``metrics`` (numbers the device
measured). Message types:

* ``query.ping``  -> an empty reply (round-trip and overhead measurements);
* ``query.hello`` -> the device's class, name and software versions, and its clock;
* ``train.setup`` -> the model assignment, data partition, method and hyperparameters;
* ``train``       -> global knowledge in; the device optionally evaluates, trains, and uploads;
* ``evaluate``    -> global knowledge in; the device evaluates only.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import (
    get_all_nested_objects,
    get_object_tree,
    iterate_object_tree,
)

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
        records["config"] = ConfigRecord({"json": json.dumps(config)})
    if payload is not None:
        records["payload"] = ArrayRecord(
            {k: Array(np.ascontiguousarray(v)) for k, v in payload.items()}
        )
    if metrics is not None:
        records["metrics"] = MetricRecord({k: float(v) for k, v in metrics.items()})
    return RecordDict(records)


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


def content_bytes(message: Message) -> int:
    """Bytes Flower puts on the wire between SuperLink and device for this message's content.

    The direction follows from the message: a reply travels up (device -> SuperLink), anything
    else down. See :func:`content_wire_bytes` for exactly what is counted.
    """
    upload = bool(message.metadata.reply_to_message_id)
    node = message.metadata.src_node_id if upload else message.metadata.dst_node_id
    return content_wire_bytes(
        message.content, upload=upload, node_id=node, run_id=message.metadata.run_id
    )


#: Flower's object-push session id is ``str(uuid4())``.
_SESSION_ID_CHARS = 36


def _varint_size(value: int) -> int:
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def _field(payload_len: int) -> int:
    """A length-delimited protobuf field (tag < 16) carrying ``payload_len`` bytes."""
    return 1 + _varint_size(payload_len) + payload_len


def _uint_field(value: int) -> int:
    return 0 if value == 0 else 1 + _varint_size(value)


def content_wire_bytes(content: RecordDict, *, upload: bool, node_id: int, run_id: int) -> int:
    """Protobuf bytes of the Fleet API bodies that carry ``content`` one way, for one device.

    Flower 1.41 sends a message as its metadata plus an ``ObjectTree`` (object ids, nested like
    the records), then every object body in its own request:

    * up (``PushMessages`` + one ``PushObject`` per object): each *distinct* object once, as
      ``PushObjectRequest(node, run_id, object_id, object_content, session_id)``. Flower dedups
      by object id within a message, so identical arrays in one message travel once;
    * down (``PullMessages`` + one ``PullObject`` per object): one
      ``PullObjectResponse(object_found, object_available, object_content)`` per node of the
      tree. The SuperNode asks for every node, so an object that appears under two parents is
      pulled twice (only identical children of one parent are merged).

    Counted: those bodies for every object of the content (the ``RecordDict`` and everything
    under it) and the content's branch of the ``ObjectTree``. Not counted: the message's own
    metadata object and protobuf, the small request/acknowledgement messages of the other
    direction, HTTP/TCP/TLS framing (transport-dependent), and objects Flower skips because the
    receiver already holds them from *another* message still in its object store (not knowable
    from the message alone).
    """
    tree = get_object_tree(content)
    objects = get_all_nested_objects(content)
    sizes = {oid: len(obj.deflate()) for oid, obj in objects.items()}
    total = _field(tree.ByteSize())  # the content's branch of the message's ObjectTree
    if upload:
        node, ids = _field(_uint_field(node_id)), _field(64) + _field(_SESSION_ID_CHARS)
        fixed = node + _uint_field(run_id) + ids
        total += sum(fixed + _field(size) for size in sizes.values())
    else:
        fixed = 2 + 2  # object_found = true, object_available = true
        total += sum(fixed + _field(sizes[t.object_id]) for t in iterate_object_tree(tree))
    return total


def payload_nbytes(payload: Payload) -> int:
    """The raw size of a payload's arrays (what a method declares it sends)."""
    return int(sum(np.asarray(v).nbytes for v in payload.values()))
