"""The message layout: few Flower objects per message (each is one SuperLink request each way),
and every array, metric and config value read back as it was written."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents

from htfl import protocol
from tests.algorithms.conftest import instruction, reply_to


def objects(message) -> int:
    """How many objects Flower moves for ``message`` (its own included)."""
    return len(get_all_nested_objects(message))


def through_flower(content):
    """``content`` deflated into Flower's objects and inflated again, as a message."""
    blobs = {oid: obj.deflate() for oid, obj in get_all_nested_objects(content).items()}
    return instruction(inflate_object_from_contents(content.object_id, blobs))


def fedproto_payload() -> dict[str, np.ndarray]:
    return {"protos": np.random.default_rng(0).random((10, 64)), "counts": np.arange(10.0)}


def test_a_fedproto_message_and_its_reply_are_three_objects_each() -> None:
    train = instruction(protocol.content({"round": 2, "deadline_seconds": 60}, fedproto_payload()))
    metrics = {"train_seconds": 1.5, "train_loss": 0.25, "energy_joules": 3.0}
    reply = reply_to(train, protocol.content(None, fedproto_payload(), metrics))
    protocol.set_trace(reply.content, np.ones((40, 4)))
    evaluate = reply_to(train, protocol.content(None, None, {"test_accuracy": 0.5}))
    # the message, its RecordDict and the one ConfigRecord (was 8 down, 11 up)
    assert objects(train) == objects(reply) == objects(evaluate) == 3


def test_everything_reads_back_after_flower_moved_it() -> None:
    payload = {
        "w": np.arange(12, dtype=np.float32).reshape(3, 4),
        "scalar": np.array(7, np.int64),  # 0-d keeps its shape (a Flower Array gives (1,))
        "empty": np.zeros((0, 5)),
        "half": np.ones(3, np.float16),
        "not_contiguous": np.arange(20.0).reshape(4, 5)[:, ::2],
        "big": np.linspace(0, 1, protocol.PACK_ARRAY_LIMIT // 8 + 1),  # a Flower Array
        "after_big": np.array([1.0, 2.0]),
    }
    config = {"round": 3, "name": "x"}
    metrics = {"a": 1.0, "nan": float("nan"), "n": 3}
    message = through_flower(protocol.content(config, payload, metrics))
    assert "big" in message.content.array_records[protocol.PAYLOAD_RECORD]
    got = protocol.read_payload(message)
    assert list(got) == list(payload)  # the order (a state dict's) is kept
    for name, array in payload.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape, name
        np.testing.assert_array_equal(got[name], array)
    got["w"][0, 0] = 99.0  # writable, as a Flower Array's numpy() is
    assert protocol.read_config(message) == config
    read = protocol.read_metrics(message)
    assert read["a"] == 1.0 and read["n"] == 3.0 and np.isnan(read["nan"])


def test_metrics_and_trace_are_added_to_a_reply_without_losing_its_payload() -> None:
    ins = instruction(protocol.content({"round": 1}))
    reply = reply_to(ins, protocol.content(None, fedproto_payload(), {"old": 1.0}))
    protocol.set_metrics(reply.content, {"train_seconds": 2.0})
    samples = np.arange(8.0).reshape(2, 4)
    protocol.set_trace(reply.content, samples)
    moved = through_flower(reply.content)
    assert protocol.read_metrics(moved) == {"train_seconds": 2.0}
    np.testing.assert_array_equal(protocol.read_trace(moved), samples)
    np.testing.assert_array_equal(
        protocol.read_payload(moved)["protos"], fedproto_payload()["protos"]
    )
    assert protocol.read_trace(ins) is None


def test_metric_values_are_fixed_width_on_the_wire() -> None:
    """The simulation sizes a reply with placeholder figures before it writes the real ones."""

    def size(value: float) -> int:
        content = protocol.content(metrics={"x": value, "y": 0.0})
        return len(content.config_records[protocol.RECORD].deflate())

    assert size(0.0) == size(123456.789) == size(float("nan"))


def test_equal_arrays_are_packed_once_and_object_arrays_refused() -> None:
    one = protocol.pack_arrays({"x": np.ones(1000)})
    two = protocol.pack_arrays({"x": np.ones(1000), "y": np.ones(1000)})
    assert len(two) - len(one) < 100
    arrays, order = protocol.unpack_arrays(two)
    assert order == ["x", "y"] and arrays["y"].shape == (1000,)
    with pytest.raises(protocol.ProtocolError, match="'o'.*dtype object"):
        protocol.content(payload={"o": np.array([{}, None], dtype=object)})


def test_a_message_without_config_is_a_protocol_error() -> None:
    with pytest.raises(protocol.ProtocolError, match="train message has no config"):
        protocol.read_config(instruction(protocol.content(payload={})))


def test_a_reply_in_the_older_layout_names_the_device_and_the_remedy() -> None:
    """A board provisioned before the layout changed answers hello with a ``config`` record
    holding its JSON under ``json`` (the layout before the ``htfl`` record); built here by hand
    from that description, not with htfl's writer."""
    from flwr.app import ConfigRecord, RecordDict

    old = RecordDict({"config": ConfigRecord({"json": '{"device_name": "nano-03"}'})})
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.read_config(instruction(old))
    text = str(err.value)
    assert "'nano-03'" in text and "older htfl" in text and "htfl deploy provision" in text
