"""Simulated meter: linear power model driven by the real CPU use of a process tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from htfl.device.power.drivers.simulated import SimulatedMeter

BUSY = "import time\nend = time.time() + 20\nwhile time.time() < end:\n    pass\n"


@pytest.fixture
def busy_tree():
    """A shell whose child burns one core: the meter must find the grandchild's CPU time."""
    proc = subprocess.Popen(
        ["sh", "-c", f'"{sys.executable}" -c "$BUSY"; :'], env={**os.environ, "BUSY": BUSY}
    )
    try:
        time.sleep(0.3)  # let the interpreter start
        yield proc.pid
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait()


@pytest.fixture
def idle_process():
    proc = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.05)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_cpu_time_of_the_process_tree_drives_the_model(tmp_path):
    """A grandchild burns a known 0.4 s of CPU time; the meter must account for it.

    Works on a loaded machine: the burn takes longer in wall time, not more CPU time.
    """
    done = tmp_path / "done"
    burn = (
        "import time, pathlib\n"
        "while time.process_time() < 0.4:\n    pass\n"
        f"pathlib.Path({str(done)!r}).touch()\n"
    )
    proc = subprocess.Popen(
        ["sh", "-c", f'"{sys.executable}" -c "$BURN"; sleep 30'], env={**os.environ, "BURN": burn}
    )
    try:
        meter = SimulatedMeter(idle_watts=2.0, busy_watts=7.5, pid=proc.pid, cpu_count=1)
        with meter:
            deadline = time.monotonic() + 20
            while not done.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.2)  # let the shell reap it
            s = meter.read()
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait()
    assert done.exists()
    assert 0.3 < meter.window_cpu_seconds < 0.8
    assert meter.utilisation == pytest.approx(meter.window_cpu_seconds / meter.window_seconds)
    assert s.watts == pytest.approx(2.0 + 5.5 * meter.utilisation)
    assert s.volts == 5.0
    assert s.amps == pytest.approx(s.watts / 5.0)


def test_idle_process_stays_near_idle_watts(idle_process):
    meter = SimulatedMeter(idle_watts=2.0, busy_watts=7.5, pid=idle_process, cpu_count=1)
    with meter:
        time.sleep(0.3)
        s = meter.read()
    assert meter.utilisation < 0.05
    assert s.watts < 2.0 + 5.5 * 0.05


def test_utilisation_is_normalised_by_core_count(busy_tree):
    one = SimulatedMeter(idle_watts=0.0, busy_watts=1.0, pid=busy_tree, cpu_count=1)
    four = SimulatedMeter(idle_watts=0.0, busy_watts=1.0, pid=busy_tree, cpu_count=4)
    with one, four:
        time.sleep(0.4)
        u1 = one.read().watts
        u4 = four.read().watts
    assert u4 == pytest.approx(u1 / 4, rel=0.25)


def test_noise_is_reproducible_with_a_seed(idle_process):
    def noise(seed: int) -> list[float]:
        m = SimulatedMeter(
            idle_watts=3.0, busy_watts=3.0, pid=idle_process, noise_watts=0.2, seed=seed
        )
        with m:
            return [m.read().watts - 3.0 for _ in range(5)]

    a, b, c = noise(7), noise(7), noise(8)
    assert a == b
    assert a != c
    assert all(abs(x) < 1.5 for x in a)
    assert len(set(a)) == 5


def test_model_validation_and_exited_process():
    with pytest.raises(ValueError, match="busy_watts"):
        SimulatedMeter(idle_watts=5.0, busy_watts=1.0)
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(ProcessLookupError):
        SimulatedMeter(idle_watts=1.0, busy_watts=2.0, pid=proc.pid).open()


def test_a_coarse_simulated_meter_prices_a_message_exactly(tmp_path):
    """Samples every 5 s, a message of about half a second: the agent samples where the
    message starts and ends, and its energy is idle watts x seconds plus the watts per core of
    the CPU time it used, not a trapezoid across two ticks. The server, from the trace the
    reply carries, gets the same figure."""
    from htfl import protocol
    from htfl.device.instruments import DeviceInstruments
    from htfl.device.power.energy import attribute
    from htfl.device.power.meter import PowerSample
    from tests.algorithms.conftest import instruction

    meter = {"driver": "simulated", "idle_watts": 2, "busy_watts": 10, "interval": 5.0}
    agent = DeviceInstruments("d-01", "jetson-nano", meter={**meter, "cpu_count": 1})
    agent.start()
    try:
        time.sleep(0.3)  # the first tick
        start, cpu0 = time.time(), time.process_time()
        agent.mark()
        while time.process_time() - cpu0 < 0.4:  # the message's work
            pass
        end, cpu1 = time.time(), time.process_time()
        asked = time.monotonic()
        energy = agent.energy(start, end, "busy")
        waited = time.monotonic() - asked
        agent.mark()  # an idle sample after it: a step down at the closing sample's instant
        time.sleep(0.3)
        reply = protocol.content(metrics={})
        agent.attach_trace(reply)
    finally:
        agent.stop()
    assert energy is not None and not energy.partial
    assert waited < 2.5  # the closing sample was taken at once, not at the next 5 s tick
    expected = 2.0 * (end - start) + 8.0 * (cpu1 - cpu0)
    assert energy.joules == pytest.approx(expected, rel=0.03, abs=0.05)
    rows = protocol.read_trace(instruction(reply))
    assert rows is not None
    trace = [PowerSample(t, w, v, None, "simulated") for t, w, v, _ in rows.tolist()]
    (server,) = attribute(trace, [("busy", start, end)])
    assert not server.partial and server.joules == pytest.approx(energy.joules, rel=1e-9)
