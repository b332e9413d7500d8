"""The SuperNode adapter: fails loudly if Flower changes what it relies on."""

from __future__ import annotations

import threading
import time

import flwr.supernode.start_client_internal as sci
import pytest

from htfl import flower_adapter
from htfl.flower_adapter import FlowerAdapterError, SuperNodePacer


def test_installed_flower_has_the_shape_the_adapter_patches() -> None:
    flower_adapter.check_compatible()  # raises FlowerAdapterError with the reasons otherwise


def test_check_fails_loudly_when_the_idle_sleep_changes(monkeypatch) -> None:
    real_getsource = flower_adapter.inspect.getsource

    def changed(obj):
        return real_getsource(obj).replace("time.sleep(3)", "time.sleep(5)")

    monkeypatch.setattr(flower_adapter.inspect, "getsource", changed)
    with pytest.raises(FlowerAdapterError, match="time.sleep\\(3\\)"):
        flower_adapter.check_compatible()


def test_check_fails_on_another_flower_version(monkeypatch) -> None:
    monkeypatch.setattr(flower_adapter.flwr, "__version__", "1.42.0")
    with pytest.raises(FlowerAdapterError, match="1.42.0"):
        flower_adapter.check_compatible()


def test_install_routes_supernode_waits_through_the_pacer(monkeypatch) -> None:
    monkeypatch.setattr(sci, "time", sci.time)
    monkeypatch.setattr(sci, "_pull_and_store_message", sci._pull_and_store_message)
    original = sci._pull_and_store_message
    pacer = SuperNodePacer()
    flower_adapter.install(pacer)
    assert sci.time is pacer
    assert sci._pull_and_store_message.__wrapped__ is original
    flower_adapter.install(pacer)  # idempotent: still wraps Flower's function, not ours
    assert sci._pull_and_store_message.__wrapped__ is original


def test_idle_poll_is_short_while_active_and_long_after() -> None:
    pacer = SuperNodePacer(
        active_poll_seconds=0.01, idle_poll_seconds=0.2, active_window_seconds=0.3
    )
    assert pacer.current_poll_seconds() == 0.2  # never saw a message
    pacer.note_message()
    assert pacer.message_stored.is_set()
    assert pacer.current_poll_seconds() == 0.01
    t0 = time.monotonic()
    pacer.sleep(3)  # Flower's idle sleep becomes the active poll
    assert time.monotonic() - t0 < 0.15
    time.sleep(0.35)
    assert pacer.current_poll_seconds() == 0.2


def test_reply_wait_ends_when_the_worker_pushes() -> None:
    pacer = SuperNodePacer()
    threading.Timer(0.05, pacer.reply_pushed.set).start()
    t0 = time.monotonic()
    pacer.sleep(0.5)  # Flower's reply poll waits on the worker's event instead
    assert time.monotonic() - t0 < 0.3
    assert not pacer.reply_pushed.is_set()  # consumed


def test_object_pulls_retry_fast_on_both_sides(monkeypatch) -> None:
    import flwr.superlink.grid.http_grid as grid

    monkeypatch.setattr(sci, "time", sci.time)
    monkeypatch.setattr(sci, "_pull_and_store_message", sci._pull_and_store_message)
    monkeypatch.setattr(sci, "pull_objects", sci.pull_objects)
    monkeypatch.setattr(grid, "pull_objects", grid.pull_objects)
    flower_adapter.install(SuperNodePacer())
    flower_adapter.install_server()
    assert sci.pull_objects is flower_adapter.fast_pull_objects
    assert grid.pull_objects is flower_adapter.fast_pull_objects
    calls = []

    def fake_pull(object_ids, pull_object_fn, **kwargs):
        calls.append(kwargs)
        return {}

    monkeypatch.setattr(flower_adapter._inflatable, "pull_objects", fake_pull)
    flower_adapter.fast_pull_objects(["a"], pull_object_fn=None)
    assert calls == [{"initial_backoff": flower_adapter.PULL_INITIAL_BACKOFF_SECONDS}]
