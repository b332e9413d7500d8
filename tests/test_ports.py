"""htfl.ports: the one free-port helper and listener wait that the agent, the local fleet, the SSH
test fleet, the tests and the benchmarks share."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from htfl.ports import free_port, free_ports, wait_for_port


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8
    socks = [socket.socket() for _ in ports]
    try:
        for sock, port in zip(socks, ports, strict=True):
            sock.bind(("127.0.0.1", port))
    finally:
        for sock in socks:
            sock.close()
    assert 0 < free_port() < 65536


def test_wait_for_port_returns_once_something_listens() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        wait_for_port(server.getsockname()[1], timeout=5)


def test_wait_for_port_names_a_process_that_exited_and_its_log(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    log = tmp_path / "superlink.log"
    with pytest.raises(RuntimeError, match=rf"SuperLink exited with 3; see {log}"):
        wait_for_port(free_port(), 5, proc, log, what="SuperLink")


def test_wait_for_port_gives_up_after_the_timeout() -> None:
    with pytest.raises(RuntimeError, match=r"sshd did not listen on 127\.0\.0\.1:\d+ within 0 s"):
        wait_for_port(free_port(), 0.2, what="sshd")
