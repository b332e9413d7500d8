"""The Flower adapter: tunes named call sites only, fails loudly in its check if Flower changes
what it relies on, and leaves Flower stock (with a warning) rather than refusing to start."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
from flwr.app import Message
from flwr.supercore.inflatable.inflatable_object import (
    get_all_nested_objects,
    get_object_tree,
    no_object_id_recompute,
)
from flwr.supercore.object_store.in_memory_object_store import InMemoryObjectStore
from flwr.supernode.nodestate.in_memory_nodestate import InMemoryNodeState

from htfl import flower_adapter, flower_internals, protocol
from htfl.flower_adapter import FlowerAdapterError, SuperNodePacer
from tests.algorithms.conftest import instruction, reply_to
from tests.support.flower_wire import GRID, GRID_TUNED, SUPERNODE, TUNED, tuned_supernode

sci = flower_internals.patch_targets()[SUPERNODE]
grid = flower_internals.patch_targets()[GRID]


utils = flower_internals.patch_targets()[flower_internals.OBJECT_TRANSFER]


@pytest.fixture
def restore_flower(monkeypatch):
    """Whatever a test installs into Flower's modules is undone after it."""
    for name in TUNED:
        monkeypatch.setattr(sci, name, getattr(sci, name))
    for name in GRID_TUNED:
        monkeypatch.setattr(grid, name, getattr(grid, name))
    monkeypatch.setattr(utils, "get_num_workers", utils.get_num_workers)


def test_installed_flower_has_the_shape_the_adapter_patches() -> None:
    flower_adapter.check_compatible()  # raises FlowerAdapterError with the reasons otherwise


def test_check_fails_loudly_when_the_reply_wait_changes(monkeypatch) -> None:
    real_getsource = flower_adapter.inspect.getsource

    def changed(obj):
        return real_getsource(obj).replace("get_messages_legacy(is_reply=True)", "replies()")

    monkeypatch.setattr(flower_adapter.inspect, "getsource", changed)
    with pytest.raises(FlowerAdapterError, match="_push_messages no longer waits for replies"):
        flower_adapter.check_compatible()


def test_check_fails_on_another_flower_version(monkeypatch) -> None:
    monkeypatch.setattr(flower_adapter.flwr, "__version__", "1.42.0")
    with pytest.raises(FlowerAdapterError, match="1.42.0"):
        flower_adapter.check_compatible()


def test_another_flower_runs_stock_with_a_warning(monkeypatch, caplog, restore_flower) -> None:
    monkeypatch.setattr(flower_adapter, "SUPPORTED_FLWR", "0.9.")
    before = {n: getattr(sci, n) for n in TUNED} | {
        f"grid.{n}": getattr(grid, n) for n in GRID_TUNED
    }
    with caplog.at_level(logging.WARNING, logger="htfl.flower_adapter"):
        assert flower_adapter.install(SuperNodePacer()) is False
        assert flower_adapter.install_server() is False
    after = {n: getattr(sci, n) for n in TUNED} | {
        f"grid.{n}": getattr(grid, n) for n in GRID_TUNED
    }
    assert after == before  # nothing patched
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("adapter written for 0.9.x" in w and "stock Flower" in w for w in warnings)


def test_install_wraps_the_named_call_sites_only(restore_flower) -> None:
    pulled, pushed = sci._pull_and_store_message, sci._push_messages
    assert flower_adapter.install(SuperNodePacer())
    assert sci.time is time  # no wait is rerouted by its duration
    assert sci._pull_and_store_message.__wrapped__ is pulled
    assert sci._push_messages.__wrapped__ is pushed
    assert sci.pull_objects is flower_adapter.fast_pull_objects
    flower_adapter.install(SuperNodePacer())  # idempotent: still wraps Flower's, not ours
    assert sci._pull_and_store_message.__wrapped__ is pulled
    assert sci._push_messages.__wrapped__ is pushed


def test_idle_poll_is_short_while_active_and_long_after() -> None:
    pacer = SuperNodePacer(
        active_poll_seconds=0.01, idle_poll_seconds=0.2, active_window_seconds=0.3
    )
    assert pacer.current_poll_seconds() == 0.2  # never saw a message
    pacer.note_message()
    assert pacer.message_stored.is_set()
    assert pacer.current_poll_seconds() == 0.01
    time.sleep(0.35)
    assert pacer.current_poll_seconds() == 0.2


def test_main_loop_polls_at_the_pacer_rate_instead_of_idling_3_s() -> None:
    """Flower's step, called as its main loop calls it: empty polls at the active rate."""
    pacer = SuperNodePacer(active_poll_seconds=0.01)
    pacer.note_message()  # an experiment is active
    polls = []

    def receive():
        polls.append(time.monotonic())
        if len(polls) == 5:
            raise KeyboardInterrupt  # stands in for the SIGTERM that ends the loop
        return None  # nothing for this node

    with tuned_supernode(lambda d, n: None, pacer), pytest.raises(KeyboardInterrupt):
        sci._pull_and_store_message(
            state=None, object_store=None, node_config={}, receive=receive, get_run=None,
            get_fab=None, pull_object=None, confirm_message_received=None,
            trusted_entities=None,
        )  # fmt: skip
    gaps = [b - a for a, b in zip(polls, polls[1:], strict=False)]
    assert max(gaps) < 0.5, gaps  # stock Flower returns to a 3 s sleep after every empty poll


def _reply() -> Message:
    ins = instruction(protocol.content(config={"round": 1}))
    return reply_to(ins, protocol.content(None, {"w": np.ones(10)}, {"m": 1.0}))


def _store(reply: Message, state, store, late: str | None = None) -> None:
    """What the worker's ``push_message`` leaves in the SuperNode; ``late``'s body not yet."""
    with no_object_id_recompute():
        reply.metadata.__dict__["_message_id"] = reply.object_id
        state.store_message(reply)
        store.preregister(reply.metadata.run_id, get_object_tree(reply))
        for oid, obj in get_all_nested_objects(reply).items():
            if oid != late:
                store.put(oid, obj.deflate())


def _push(pacer: SuperNodePacer, state, store, sent_at: list[float] | None = None) -> list[str]:
    """Flower's ``_push_messages``, tuned; ``sent_at`` gets the time the message went up."""
    pushed: list[str] = []
    counted: list[int] = []

    def send(message, tree, runtime):
        if sent_at is not None:
            sent_at.append(time.monotonic())
        return {t.object_id for t in flower_internals.iterate_object_tree(tree)}, "s"

    with tuned_supernode(lambda d, n: counted.append(n), pacer):
        sci._push_messages(
            state=state,
            object_store=store,
            send=send,
            push_object=lambda run_id, session, oid, content: pushed.append(oid),
        )
    assert counted and counted[0] > 80  # the 10 float64s and their record were counted
    return pushed


def test_reply_wait_ends_when_the_worker_pushes() -> None:
    store = InMemoryObjectStore()
    state = InMemoryNodeState(store)
    pacer = SuperNodePacer()
    reply = _reply()

    def worker_answers() -> None:
        _store(reply, state, store)
        pacer.reply_pushed.set()

    threading.Timer(0.05, worker_answers).start()
    t0 = time.monotonic()
    pushed = _push(pacer, state, store)
    assert time.monotonic() - t0 < 0.3  # stock Flower looks again only after 0.5 s
    assert reply.metadata.message_id in pushed
    assert not pacer.reply_pushed.is_set()  # consumed


def test_an_unrelated_wait_of_the_same_length_is_untouched() -> None:
    """``_push_messages`` also waits 0.5 s for an object whose body is not stored yet: that
    wait stays Flower's even while the worker's event is set (the old duration-routed pacer
    turned it into a wait on that event)."""
    store = InMemoryObjectStore()
    state = InMemoryNodeState(store)
    pacer = SuperNodePacer()
    reply = _reply()
    array = reply.content.config_records[protocol.RECORD]  # the record with the payload
    late_id = array.object_id
    _store(reply, state, store, late=late_id)  # the array's body is still on its way
    sent_at: list[float] = []
    stop = threading.Event()

    def eager_worker() -> None:  # sets the reply event again and again meanwhile
        while not stop.is_set():
            pacer.reply_pushed.set()
            if sent_at and not store.get(late_id):
                time.sleep(0.1)  # Flower is now waiting for the body; it arrives
                store.put(late_id, array.deflate())
            time.sleep(0.01)

    threading.Thread(target=eager_worker, daemon=True).start()
    try:
        pushed = _push(pacer, state, store, sent_at)
        waited = time.monotonic() - sent_at[0]
    finally:
        stop.set()
    assert waited >= 0.5  # Flower's own 0.5 s wait for the body, not cut short
    assert late_id in pushed


def test_object_pulls_retry_fast_on_both_sides(monkeypatch, restore_flower) -> None:
    assert flower_adapter.install(SuperNodePacer())
    assert flower_adapter.install_server()
    assert sci.pull_objects is flower_adapter.fast_pull_objects
    calls = []

    def fake_pull(object_ids, pull_object_fn, **kwargs):
        calls.append(kwargs)
        return {}

    utils = flower_internals.patch_targets()["flwr.supercore.inflatable.inflatable_utils"]
    monkeypatch.setattr(utils, "pull_objects", fake_pull)
    sci.pull_objects(["a"], pull_object_fn=None)
    grid.pull_objects(object_ids=["a"], pull_object_fn=None)
    assert calls == [{"initial_backoff": flower_adapter.PULL_INITIAL_BACKOFF_SECONDS}] * 2


def test_a_recheck_while_the_worker_is_busy_leaves_its_half_pushed_reply_alone() -> None:
    """The worker has put its reply in the node state but is still pushing an object: a
    recheck must not take it (Flower would then wait 0.5 s for the body); the worker's event,
    once everything is in, does."""
    store = InMemoryObjectStore()
    state = InMemoryNodeState(store)
    pacer = SuperNodePacer()
    pacer.worker_busy = True
    reply = _reply()
    array = reply.content.config_records[protocol.RECORD]  # the record with the payload
    _store(reply, state, store, late=array.object_id)
    sent_at: list[float] = []

    def worker_finishes() -> None:  # after the first recheck (0.5 s) has passed
        store.put(array.object_id, array.deflate())
        pacer.worker_busy = False
        pacer.reply_pushed.set()

    threading.Timer(0.7, worker_finishes).start()
    t0 = time.monotonic()
    pushed = _push(pacer, state, store, sent_at)
    assert sent_at[0] - t0 >= 0.65  # not taken at the 0.5 s recheck
    assert time.monotonic() - t0 < 1.1  # and no 0.5 s sleep for a missing body after it
    assert array.object_id in pushed


def test_a_messages_objects_move_together(restore_flower) -> None:
    assert flower_adapter.install(SuperNodePacer())
    assert utils.get_num_workers(2) == flower_adapter.OBJECT_TRANSFER_CONCURRENCY
    assert flower_adapter.OBJECT_TRANSFER_CONCURRENCY >= 8


def test_install_makes_the_worker_event_driven(restore_flower) -> None:
    pacer = SuperNodePacer()
    assert not pacer.event_driven  # a worker beside a stock SuperNode polls
    assert flower_adapter.install(pacer)
    assert pacer.event_driven
