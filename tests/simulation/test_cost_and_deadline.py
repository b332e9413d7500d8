"""The simulated run's cost model and modelled deadline, on their own (no Flower run): the
figures follow the class profile, and lateness follows the modelled round time."""

from __future__ import annotations

import pytest
from flwr.app import Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from htfl import protocol
from htfl.devices import device_class
from htfl.workstation.server.exchange import Exchange
from htfl.workstation.simulation.clientapp import virtual_devices
from htfl.workstation.simulation.cost import link_seconds, model_cost, train_steps
from htfl.workstation.simulation.deadline import modelled_stragglers


def test_link_time_is_payload_over_bandwidth_plus_latency() -> None:
    nano = device_class("jetson-nano").profile  # 100 Mbit/s, 0.5 ms
    assert link_seconds(nano, 0) == pytest.approx(0.0005)
    assert link_seconds(nano, 12_500_000) == pytest.approx(1.0005)  # 100 Mbit


def test_compute_scales_with_relative_speed_and_energy_with_watts() -> None:
    fast = model_cost("jetson-agx-orin", 2.0, 1000, 1000)  # 4x the reference core
    slow = model_cost("jetson-nano", 2.0, 1000, 1000)  # 0.5x
    assert fast.compute_seconds == pytest.approx(0.5)
    assert slow.compute_seconds == pytest.approx(4.0)
    nano = device_class("jetson-nano").profile
    transfer = slow.download_seconds + slow.upload_seconds
    assert slow.energy_joules == pytest.approx(nano.busy_watts * 4.0 + nano.idle_watts * transfer)
    assert slow.round_seconds == pytest.approx(4.0 + transfer)


def test_train_steps_count_every_batch_of_every_epoch() -> None:
    assert train_steps(100, 10, 2) == 20
    assert train_steps(101, 10, 1) == 11
    assert train_steps(0, 10, 1) == 1


def test_virtual_devices_fill_the_classes_then_cycle() -> None:
    devices = virtual_devices({"jetson-nano": 2, "orange-pi-5b": 1}, 6)
    assert devices[:3] == [
        ("jetson-nano-01", "jetson-nano"),
        ("jetson-nano-02", "jetson-nano"),
        ("orange-pi-5b-01", "orange-pi-5b"),
    ]
    # then round robin over the classes
    assert [c for _, c in devices[3:]] == ["orange-pi-5b", "jetson-nano", "orange-pi-5b"]
    assert len({name for name, _ in devices}) == 6


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    # Messages outside a Flower process take their run id from TaskIdentity.
    for name, value in (("_run_id", 42), ("_node_id", 1), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value, raising=False)


def _reply(seconds: float | None) -> Message:
    metrics = {} if seconds is None else {"modelled_round_seconds": seconds}
    content = protocol.content(metrics=metrics) if metrics else RecordDict()
    return Message(content, dst_node_id=1, message_type=protocol.TRAIN)


def test_a_reply_past_the_deadline_in_modelled_time_is_late_not_merged() -> None:
    ex = Exchange(replies={1: _reply(0.5), 2: _reply(3.0), 3: _reply(None)}, missing=[4])
    errors = modelled_stragglers(ex, deadline_seconds=2.0)
    assert sorted(ex.replies) == [1, 3]  # on time, and a real device's reply
    assert ex.missing == [2, 4]
    assert list(errors) == [2] and "3.0 s is past the 2 s deadline" in errors[2]
