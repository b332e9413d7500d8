"""An agent whose SuperLink dies and never returns: it waits without spinning a CPU, then
exits non-zero with a clear message after ``--superlink-lost-after`` seconds (orphaned agents
were once seen running for hours after their SuperLink died). A hand-started agent serves
/metrics on loopback only. A real SuperLink and a real ``htfl agent``."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from htfl.ports import free_port, free_ports
from htfl.workstation.local_fleet import flower_env, start_superlink, stop_process_group

pytestmark = pytest.mark.integration

LOST_AFTER = 15.0


def _wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in log.read_text(errors="replace"):
            return
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not in {log} after {timeout} s")


def test_an_agent_whose_superlink_never_returns_exits_non_zero_without_spinning(
    tmp_path: Path,
) -> None:
    superlink_port, metrics_port = free_ports(2)
    env = flower_env(tmp_path / "flwr-home")
    superlink = start_superlink(superlink_port, tmp_path / "superlink.log", env)
    log = tmp_path / "agent.log"
    argv = [sys.executable, "-m", "htfl", "agent", "--superlink", f"127.0.0.1:{superlink_port}"]
    argv += ["--device-class", "jetson-nano", "--name", "nano-01"]
    argv += ["--metrics-port", str(metrics_port), "--data-dir", str(tmp_path / "data")]
    argv += ["--superlink-lost-after", str(LOST_AFTER)]
    with open(log, "wb") as out:
        agent = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_for(log, "SuperNode ID", agent, 300)
        # no --metrics-host: /metrics on loopback only
        listening = {
            c.laddr
            for c in psutil.Process(agent.pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN
        }
        assert ("127.0.0.1", metrics_port) in listening, listening

        stop_process_group(superlink)
        lost_at = time.monotonic()
        probe = psutil.Process(agent.pid)
        probe.cpu_percent(None)
        time.sleep(LOST_AFTER / 2)
        busy = probe.cpu_percent(None)  # percent of one core while waiting for the SuperLink
        assert busy < 25, f"the waiting agent used {busy:.0f}% of a core"

        code = agent.wait(LOST_AFTER + 120)
        waited = time.monotonic() - lost_at
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        stop_process_group(superlink)
    text = log.read_text(errors="replace")
    assert code == 1, text[-3000:]
    assert "SuperLink at 127.0.0.1:" in text and "was not reachable for 15 s" in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert waited >= LOST_AFTER - 1
    assert free_port()  # the agent's ports are free again (nothing left listening)
