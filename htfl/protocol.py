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

Layout on the wire: Flower moves each record, array and array chunk of a message as an object
of its own, one HTTP request to the SuperLink each way, and on a small machine those requests
(not the bytes) are what a fleet round costs. So a message carries one ConfigRecord,
``htfl``, with the config (JSON text), the metrics (doubles, keys ``m.<name>``), the payload's
small arrays packed into one byte string (``arrays``, see :func:`pack_arrays`) and the
device's power samples (``power_trace``, packed the same way): with the message and its
RecordDict, three objects (a FedProto message was 8 to 11). Arrays above
:data:`PACK_ARRAY_LIMIT` bytes, and those that would take the packed string past
:data:`PACK_TOTAL_LIMIT`, stay Flower Arrays in an ArrayRecord ``payload``, where Flower chunks
them and keeps one copy of a chunk two arrays share.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict

PING = "query.ping"
HELLO = "query.hello"
SETUP = "train.setup"
TRAIN = "train"
EVALUATE = "evaluate"

Payload = dict[str, np.ndarray]

#: The record that carries a message's config, metrics, small arrays and power samples.
RECORD = "htfl"
#: The record of the arrays too big to pack (Flower chunks them; a shared chunk moves once).
PAYLOAD_RECORD = "payload"
#: An array of at most this many bytes is packed into the ``htfl`` record...
PACK_ARRAY_LIMIT = 1024 * 1024
#: ...while the packed string stays within this (below Flower's 5 MiB chunk: one object of
#: the size Flower would move anyway).
PACK_TOTAL_LIMIT = 4 * 1024 * 1024
_HEADER = struct.Struct("<I")


class ProtocolError(ValueError):
    """A message did not have the shape this protocol promises; names what was wrong."""


def content(
    config: dict[str, Any] | None = None,
    payload: Payload | None = None,
    metrics: dict[str, float] | None = None,
) -> RecordDict:
    values: dict[str, Any] = {}
    records: dict[str, Any] = {}
    if config is not None:
        values["config"] = json.dumps(config)
    if payload is not None:
        arrays = {k: np.asarray(v, order="C") for k, v in payload.items()}  # 0-d stays 0-d
        packed, rest = _split(arrays)
        values["arrays"] = pack_arrays(packed, order=list(arrays))
        if rest:
            records[PAYLOAD_RECORD] = ArrayRecord({k: Array(v) for k, v in rest.items()})
    if metrics is not None:
        values.update(_metric_values(metrics))
    return RecordDict({RECORD: ConfigRecord(values), **records})


def _split(arrays: Payload) -> tuple[Payload, Payload]:
    """The arrays to pack, and those to leave to Flower as Arrays (big ones)."""
    packed: Payload = {}
    rest: Payload = {}
    total = 0
    for name, array in arrays.items():
        if array.nbytes <= PACK_ARRAY_LIMIT and total + array.nbytes <= PACK_TOTAL_LIMIT:
            packed[name] = array
            total += array.nbytes
        else:
            rest[name] = array
    return packed, rest


def pack_arrays(arrays: Payload, order: list[str] | None = None) -> bytes:
    """``arrays`` as one byte string: a JSON header (each array's dtype, shape and offset, and
    the names in ``order``, including any kept out of the string) and the raw bytes. Equal
    arrays are stored once. Object arrays are refused (their bytes are pointers)."""
    entries: dict[str, list[Any]] = {}
    offsets: dict[tuple[str, tuple[int, ...], bytes], int] = {}
    chunks: list[bytes] = []
    size = 0
    for name, value in arrays.items():
        array = np.asarray(value, order="C")
        if array.dtype.hasobject:
            raise ProtocolError(f"array {name!r} has dtype object, which cannot be sent")
        raw = array.tobytes()
        key = (array.dtype.str, array.shape, raw)
        if key not in offsets:
            offsets[key] = size
            chunks.append(raw)
            size += len(raw)
        entries[name] = [array.dtype.str, list(array.shape), offsets[key]]
    header = json.dumps({"order": order or list(arrays), "arrays": entries}).encode()
    return b"".join([_HEADER.pack(len(header)), header, *chunks])


def unpack_arrays(blob: bytes) -> tuple[Payload, list[str]]:
    """The arrays :func:`pack_arrays` packed (writable copies), and the names in order."""
    (length,) = _HEADER.unpack_from(blob)
    header = json.loads(blob[_HEADER.size : _HEADER.size + length])
    data = memoryview(blob)[_HEADER.size + length :]
    arrays = {}
    for name, (dtype, shape, offset) in header["arrays"].items():
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        flat = np.frombuffer(data, dtype=dt, count=count, offset=offset)
        arrays[name] = flat.reshape(shape).copy()
    return arrays, list(header["order"])


#: The prefix of a metric's key in the ``htfl`` record.
_METRIC = "m."


def _metric_values(metrics: dict[str, float]) -> dict[str, float]:
    """Each figure a double (fixed width on the wire, whatever its value)."""
    return {_METRIC + k: float(v) for k, v in metrics.items()}


def _record(message: Message) -> ConfigRecord:
    return message.content.config_records.get(RECORD) or ConfigRecord()


def _values(content: RecordDict) -> dict[str, Any]:
    """A copy of the ``htfl`` record's values, to change and put back whole."""
    return dict(content.config_records.get(RECORD) or {})


def set_metrics(content: RecordDict, metrics: dict[str, float]) -> None:
    """Put ``metrics`` into ``content`` (a reply being built), replacing any there."""
    values = {k: v for k, v in _values(content).items() if not k.startswith(_METRIC)}
    content[RECORD] = ConfigRecord({**values, **_metric_values(metrics)})


def set_trace(content: RecordDict, samples: np.ndarray) -> None:
    """Put the device's power samples (one float64 row per sample) into ``content``."""
    values = _values(content)
    values["power_trace"] = pack_arrays({"samples": np.asarray(samples, dtype=np.float64)})
    content[RECORD] = ConfigRecord(values)


def read_trace(message: Message) -> np.ndarray | None:
    """The power samples a reply carries (None: it carries none)."""
    blob = _record(message).get("power_trace")
    if blob is None:
        return None
    return unpack_arrays(bytes(blob))[0]["samples"]  # type: ignore[arg-type]


def replace_config(message: Message, config: dict[str, Any]) -> None:
    """Rewrite ``message``'s config in place (the inverse of :func:`read_config`)."""
    values = _values(message.content)
    values["config"] = json.dumps(config)
    message.content[RECORD] = ConfigRecord(values)


def read_config(message: Message) -> dict[str, Any]:
    records = message.content.config_records
    if RECORD not in records and (problem := _older_layout(message)) is not None:
        raise ProtocolError(problem)
    try:
        return json.loads(str(records[RECORD]["config"]))
    except (KeyError, json.JSONDecodeError) as err:
        raise ProtocolError(
            f"{message.metadata.message_type} message has no config: {err}"
        ) from None


def _older_layout(message: Message) -> str | None:
    """Name the mismatch when ``message`` comes from an htfl that wrote the layout before this
    one (a ``config`` record holding JSON under ``json``): a device not provisioned again after
    the workstation's htfl was updated, which would otherwise read as a malformed message."""
    old = message.content.config_records.get("config")
    if old is None or "json" not in old:
        return None
    try:
        name = json.loads(str(old["json"])).get("device_name")
    except (json.JSONDecodeError, AttributeError):
        name = None
    who = f"device {name!r}" if name else "its sender"
    return (
        f"{message.metadata.message_type} message from {who} is in an older htfl's message "
        f"layout ('config' record; this htfl reads '{RECORD}'): the device and the workstation "
        "must run the same htfl; install it on the device again (htfl deploy provision)"
    )


def read_payload(message: Message) -> Payload:
    blob = _record(message).get("arrays")
    if blob is None:
        return {}
    try:
        packed, order = unpack_arrays(bytes(blob))  # type: ignore[arg-type]
        rest: ArrayRecord | dict[str, Array]
        rest = message.content.array_records.get(PAYLOAD_RECORD) or {}
        return {k: packed[k] if k in packed else rest[k].numpy() for k in order}
    except Exception as err:
        raise ProtocolError(
            f"{message.metadata.message_type} payload is malformed: {err}"
        ) from None


def read_metrics(message: Message) -> dict[str, float]:
    n = len(_METRIC)
    return {
        k[n:]: float(v)  # type: ignore[arg-type]
        for k, v in _record(message).items()
        if k.startswith(_METRIC)
    }


def payload_nbytes(payload: Payload) -> int:
    """The raw size of a payload's arrays (what a method declares it sends)."""
    return int(sum(np.asarray(v).nbytes for v in payload.values()))
