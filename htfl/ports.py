"""Free TCP ports and waiting for a listener: one helper for the agent, the local fleet, the SSH
test fleet, the tests and the benchmarks (device and workstation code both use it, so it lives in
the shared package)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free TCP ports on ``host``, all held open together while choosing (so
    no two are the same); another process may still take one before the caller binds it."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """One free TCP port on ``host`` (loopback unless told)."""
    return free_ports(1, host)[0]


def wait_for_port(
    port: int,
    timeout: float,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
    host: str = "127.0.0.1",
    what: str = "the server",
) -> None:
    """Return once ``host:port`` accepts a connection; raise RuntimeError naming ``what`` (and its
    log) if ``proc`` exits first or ``timeout`` seconds pass."""
    seen = f"; see {log}" if log else ""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}{seen}")
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {host}:{port} within {timeout:.0f} s{seen}")
