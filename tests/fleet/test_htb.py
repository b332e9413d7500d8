"""Link bandwidth by the kernel: htb classes on loopback per relay port, shared by fleets, and
nothing left behind (also after a fleet that was killed). Real tc on the host's ``lo`` (root).

Durations are only bounded below (shaping can never make a transfer faster; a busy host can
make it slower); the figures against their goals are benchmarks/emulation.py's."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from htfl.ports import free_ports
from htfl.workstation.fleet import htb

needs_tc = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("tc") is None, reason="tc qdiscs need root and iproute2"
)


def test_commands_for_a_class_and_its_filters() -> None:
    cls = htb.class_args("lo", 0x10, 1e9)
    assert cls[:8] == ["class", "replace", "dev", "lo", "parent", "1:", "classid", "1:10"]
    # no borrowing; the bucket holds 0.5 ms of the line (62.5 kB at 1 Gbit/s)
    assert cls[8:] == ["htb", "rate", "1000000000bit", "ceil", "1000000000bit", "burst", "62500",
                       "cburst", "62500", "quantum", "65536"]  # fmt: skip
    assert htb.class_args("lo", 0x11, 1e6)[14] == str(htb.MIN_BURST_BYTES)
    flt = htb.filter_args("lo", 100, "dport", 9001, 0x10)
    assert flt[-7:] == ["match", "ip", "dport", "9001", "0xffff", "flowid", "1:10"]
    assert flt[flt.index("pref") + 1] == "100"


def _filters(pref: int) -> str:
    return htb.tc("filter", "show", "dev", "lo", "parent", "1:", "pref", str(pref), check=False)


def _sent_bytes(minor: int) -> int:
    out = htb.tc("-s", "class", "show", "dev", "lo", "classid", f"1:{minor:x}")
    return int(re.search(r"Sent (\d+) bytes", out).group(1))  # type: ignore[union-attr]


def _others_shape_lo() -> bool:
    """Another fleet (another engineer's run, say) shapes lo now: the root qdisc stays."""
    return any(htb.STATE_DIR.glob("*.json"))


def _upload(port: int, size: int) -> float:
    """Seconds to send ``size`` bytes to a local sink on ``port`` and get its one-byte answer."""
    srv = socket.create_server(("127.0.0.1", port))

    def sink() -> None:
        conn, _ = srv.accept()
        got = 0
        while got < size and (data := conn.recv(1 << 20)):
            got += len(data)
        conn.sendall(b"k")
        conn.close()

    thread = threading.Thread(target=sink)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            t0 = time.perf_counter()
            client.sendall(bytes(size))
            assert client.recv(1) == b"k"
            elapsed = time.perf_counter() - t0
    finally:
        thread.join(30)
        srv.close()
    return elapsed


@pytest.mark.root
@needs_tc
def test_a_port_is_paced_both_ways_and_nothing_stays_after_remove() -> None:
    shaped, other = free_ports(2)
    shaper = htb.LoopbackShaper()
    try:
        shaper.shape({shaped: 8e6})  # 1 MB/s
        up, down = shaper.minors
        assert (htb.STATE_DIR / f"{shaper.owner}.json").exists()
        assert _filters(shaper.pref or 0).count("flowid") == 2
        # 300 kB to the shaped port take at least 0.3 s at 1 MB/s, and its class carried them
        assert _upload(shaped, 300_000) >= 0.25
        assert _sent_bytes(up) >= 300_000
        assert 0 < _sent_bytes(down) < 100_000  # the acknowledgements and the answer
        # a port no filter picks is not shaped: its bytes go by htb's direct queue
        before = _sent_bytes(up)
        _upload(other, 300_000)
        assert _sent_bytes(up) == before
    finally:
        minors, pref = list(shaper.minors), shaper.pref
        shaper.remove()
    classes = htb.class_minors("lo")
    assert not set(minors) & classes
    assert "u32" not in _filters(pref or 0)
    assert not (htb.STATE_DIR / f"{shaper.owner}.json").exists()
    if not _others_shape_lo():
        assert not htb.root_is_htb("lo")  # lo is back to its own qdisc


@pytest.mark.root
@needs_tc
def test_fleets_share_lo_and_a_killed_fleets_classes_are_cleaned_up_by_the_next() -> None:
    (port,) = free_ports(1)
    prog = (
        "import sys, time\nfrom htfl.workstation.fleet import htb\n"
        f"s = htb.LoopbackShaper(); s.shape({{{port}: 1e8}})\n"
        "print(s.owner, s.pref, *s.minors, flush=True)\ntime.sleep(600)\n"
    )
    killed = subprocess.Popen([sys.executable, "-c", prog], stdout=subprocess.PIPE, text=True)
    try:
        owner, pref, *minors = killed.stdout.readline().split()  # type: ignore[union-attr]
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    dead = [int(m) for m in minors]
    assert set(dead) <= htb.class_minors("lo")  # killed: nothing was undone
    first, second = htb.LoopbackShaper(), htb.LoopbackShaper()
    try:
        first.shape({free_ports(1)[0]: 1e9})  # cleans up after the killed one first
        # (its ids are free again, so the new fleet may take them: count what is there)
        assert not (set(dead) - set(first.minors)) & htb.class_minors("lo")
        assert _filters(int(pref)).count("flowid") == (2 if first.pref == int(pref) else 0)
        assert not (htb.STATE_DIR / f"{owner}.json").exists()
        second.shape({free_ports(1)[0]: 1e9})
        assert first.pref != second.pref
        assert not set(first.minors) & set(second.minors)
        first.remove()
        # the other fleet keeps its classes, its filters and the root qdisc
        assert set(second.minors) <= htb.class_minors("lo") and htb.root_is_htb("lo")
        assert "u32" in _filters(second.pref or 0)
    finally:
        first.remove()
        second.remove()
    assert not set(second.minors) & htb.class_minors("lo")
    if not _others_shape_lo():
        assert not htb.root_is_htb("lo")
