"""The doorbell between the ServerApp and its agents (real HTTP on loopback): a ring wakes the
node it is for at once, a ring is never lost between two waits, reply notices end the
ServerApp's wait, and an agent that cannot reach the doorbell goes back to polling."""

from __future__ import annotations

import threading
import time

import pytest

from htfl.doorbell import DoorbellClient, port_of
from htfl.flower_adapter import SuperNodePacer
from htfl.ports import free_port
from htfl.workstation.server import doorbell
from htfl.workstation.server.doorbell import Doorbell


class NodeState:
    """What the pacer asks Flower's node state for: the node id."""

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id

    def get_node_id(self) -> int:
        return self.node_id


@pytest.fixture
def bell():
    server = Doorbell("127.0.0.1", 0)
    yield server
    server.close()


def test_a_ring_wakes_the_waiting_node_and_only_it(bell) -> None:
    client = DoorbellClient("127.0.0.1", bell.port)
    other = DoorbellClient("127.0.0.1", bell.port)
    try:
        t0 = time.monotonic()
        client.wait(7, seconds=5.0)  # the first wait learns the count: it returns at once
        other.wait(8, seconds=5.0)
        assert time.monotonic() - t0 < 2.0
        assert client.wait(7, seconds=0.1) is False  # nothing rung since: the recheck is due
        threading.Timer(0.2, bell.ring, args=([7],)).start()
        t0 = time.monotonic()
        assert client.wait(7, seconds=5.0) is True
        assert 0.15 < time.monotonic() - t0 < 2.0  # woken by the ring, not the 5 s bound
        assert other.wait(8, seconds=0.2) is False  # node 8 was not rung
    finally:
        client.close()
        other.close()


def test_a_ring_between_two_waits_is_not_lost(bell) -> None:
    client = DoorbellClient("127.0.0.1", bell.port)
    try:
        client.wait(3, seconds=0.05)
        bell.ring([3])  # while the agent was busy asking the SuperLink
        t0 = time.monotonic()
        assert client.wait(3, seconds=5.0) is True
        assert time.monotonic() - t0 < 1.0
        assert client.wait(3, seconds=0.1) is False  # and counted once
    finally:
        client.close()


def test_a_reply_notice_sets_the_servers_event(bell) -> None:
    client = DoorbellClient("127.0.0.1", bell.port)
    try:
        assert not bell.replies.is_set()
        client.replied(3)
        assert bell.replies.wait(2.0)
    finally:
        client.close()


def test_bad_requests_are_refused(bell) -> None:
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{bell.port}", timeout=5) as http:
        assert http.get("/wait", params={"node": "x"}).status_code == 400
        assert http.get("/other", params={"node": 1, "after": 0, "timeout": 0}).status_code == 404
        assert http.post("/other").status_code == 404


def test_the_pacer_waits_on_the_doorbell_and_says_when_a_reply_is_in(bell) -> None:
    pacer = SuperNodePacer(active_poll_seconds=5.0, superlink_host="127.0.0.1")
    pacer.note_message()  # active: without the doorbell each idle wait would be 5 s
    pacer.use_doorbell(bell.port)
    state = NodeState(11)
    pacer.idle_wait(state)  # first wait: nothing seen yet, returns with the count
    threading.Timer(0.2, bell.ring, args=([11],)).start()
    t0 = time.monotonic()
    pacer.idle_wait(state)
    assert time.monotonic() - t0 < 2.0
    pacer.replied(state)
    assert bell.replies.wait(2.0)
    assert pacer.wait_before_polling()  # after a reply: a ring first, not a poll
    assert not pacer.wait_before_polling()  # once


def test_an_unreachable_doorbell_means_polling_again(caplog) -> None:
    caplog.set_level("INFO", logger="htfl.flower_adapter")
    pacer = SuperNodePacer(active_poll_seconds=0.05, superlink_host="127.0.0.1")
    pacer.note_message()
    port = free_port()  # nobody listens there
    pacer.use_doorbell(port, "run-1")
    t0 = time.monotonic()
    pacer.idle_wait(NodeState(1))  # refused: falls back to the poll interval
    pacer.idle_wait(NodeState(1))  # and stays there (no second attempt)
    # the run's next message names the same doorbell: not dialled again (behind a firewall
    # that drops, every try would cost a connect timeout)
    pacer.use_doorbell(port, "run-1")
    pacer.idle_wait(NodeState(1))
    assert time.monotonic() - t0 < 1.0
    pacer.replied(NodeState(1))  # no doorbell: nothing to tell, no error
    assert not pacer.wait_before_polling()  # and the SuperNode polls right away
    unreachable = [r for r in caplog.records if "not reachable" in r.getMessage()]
    assert len(unreachable) == 1
    pacer.use_doorbell(port, "run-2")  # a new run may be reachable: tried once more
    pacer.idle_wait(NodeState(1))
    assert len([r for r in caplog.records if "not reachable" in r.getMessage()]) == 2


def test_a_run_without_a_doorbell_polls() -> None:
    pacer = SuperNodePacer(active_poll_seconds=0.05, superlink_host="127.0.0.1")
    pacer.use_doorbell(port_of(""))
    pacer.use_doorbell(port_of(None))
    pacer.note_message()
    t0 = time.monotonic()
    pacer.idle_wait(None)  # no node state needed when polling
    assert 0.04 < time.monotonic() - t0 < 1.0


def test_without_the_runs_token_nothing_is_learnt_or_changed() -> None:
    import httpx

    from htfl.doorbell import TOKEN_HEADER

    bell = Doorbell("127.0.0.1", 0, token="s3cret")
    try:
        bell.ring([5])
        with httpx.Client(base_url=f"http://127.0.0.1:{bell.port}", timeout=5) as http:
            query = {"node": 5, "after": -1, "timeout": 5}
            for headers in ({}, {TOKEN_HEADER: "guess"}, {TOKEN_HEADER: ""}):
                t0 = time.monotonic()
                res = http.get("/wait", params=query, headers=headers)
                assert res.status_code == 403 and "1" not in res.text  # no ring count
                assert time.monotonic() - t0 < 2.0  # answered at once: no thread held
                assert http.post("/replied", params={"node": 5}, headers=headers).status_code == 403
        assert not bell.replies.is_set()  # a refused notice does not wake the exchange
        assert bell.record()["refused"] == 6
        assert bell.record()["waits"] == {} and bell.record()["reply_notices"] == {}
        # the run's own agent is admitted, and what it did is recorded per node
        client = DoorbellClient("127.0.0.1", bell.port, "s3cret")
        try:
            assert client.wait(5, seconds=1.0) is True  # rung before it asked
            client.replied(5)
            assert bell.replies.wait(2.0)
        finally:
            client.close()
        record = bell.record()
        assert record == {
            "port": bell.port,
            "waits": {"5": 1},
            "reply_notices": {"5": 1},
            "refused": 6,
        }
    finally:
        bell.close()


def test_a_new_runs_token_means_a_new_client_on_a_fixed_port() -> None:
    bell = Doorbell("127.0.0.1", 0, token="run-2")
    pacer = SuperNodePacer(active_poll_seconds=5.0, superlink_host="127.0.0.1")
    try:
        pacer.note_message()
        pacer.use_doorbell(bell.port, "run-1")  # the last run's, on the same fixed port
        pacer.use_doorbell(bell.port, "run-2")
        t0 = time.monotonic()
        pacer.idle_wait(NodeState(4))  # admitted: the first wait returns with the count
        assert time.monotonic() - t0 < 2.0
        assert bell.record()["waits"] == {"4": 1} and bell.record()["refused"] == 0
    finally:
        bell.close()


def test_the_run_config_names_where_the_server_listens() -> None:
    assert doorbell.address_for("127.0.0.1:9093").startswith("127.0.0.1:")
    assert doorbell.address_for("192.168.1.10:9093").startswith("0.0.0.0:")
    # [superlink] doorbell_port: a fixed port (a lab's firewall), or -1: no doorbell
    assert doorbell.address_for("192.168.1.10:9093", 9094) == "0.0.0.0:9094"
    assert doorbell.address_for("127.0.0.1:9093", -1) == ""
    config = doorbell.run_config_for("127.0.0.1:9093", 9094)
    other = doorbell.run_config_for("127.0.0.1:9093", 9094)
    assert config[doorbell.RUN_CONFIG_KEY] == "127.0.0.1:9094"
    token = config[doorbell.TOKEN_KEY]
    assert len(token) >= 32 and token != other[doorbell.TOKEN_KEY]  # a fresh one per run
    assert doorbell.run_config_for("127.0.0.1:9093", -1) == {
        doorbell.RUN_CONFIG_KEY: "",
        doorbell.TOKEN_KEY: "",
    }
    address = doorbell.address_for("localhost:9093")
    assert port_of(address) == int(address.rsplit(":", 1)[1])
    started = doorbell.start({doorbell.RUN_CONFIG_KEY: address, doorbell.TOKEN_KEY: "t"})
    try:
        assert started is doorbell.current and started.port == port_of(address)
        assert started.token == "t"
    finally:
        assert doorbell.stop() == {
            "port": port_of(address),
            "waits": {},
            "reply_notices": {},
            "refused": 0,
        }
    assert doorbell.current is None and doorbell.stop() is None
    assert doorbell.start({doorbell.RUN_CONFIG_KEY: ""}) is None
    assert doorbell.current is None
