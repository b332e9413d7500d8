"""The background sampler: rate limits, clean start/stop, rates from deltas."""

from __future__ import annotations

import os
import threading
import time

import pytest

from htfl.device.telemetry.probes import Probe, Series, SysReader, WorkerProcessProbe
from htfl.device.telemetry.sampler import MAX_RATE_HZ, Sampler

from .helpers import sampler_for, values
from .trees import bump_proc_stat


def _wait_for(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.mark.parametrize("rate", [0, -1, MAX_RATE_HZ + 0.5, 100])
def test_rate_out_of_range_rejected(rate):
    with pytest.raises(ValueError):
        Sampler([], rate_hz=rate)


def test_default_rate_is_1_hz():
    assert Sampler([]).period == 1.0


def test_runs_at_10_hz_and_stops_cleanly(make_tree):
    sampler = sampler_for(make_tree("rk3588"), "rk3588", rate_hz=10)
    sampler.start()
    assert sampler.latest.seq == 1  # synchronous first sample
    time.sleep(0.55)
    seq = sampler.latest.seq
    assert 3 <= seq <= 8, seq  # 1 + ~5 ticks in 0.55 s (fewer if the machine is busy)
    assert sampler.stop() is True
    assert not sampler.running
    assert not any(t.name == "htfl-telemetry-sampler" for t in threading.enumerate())
    frozen = sampler.latest.seq
    time.sleep(0.25)
    assert sampler.latest.seq == frozen
    assert sampler.stop() is True  # idempotent


def test_stop_does_not_wait_for_the_next_tick(tmp_path):
    sampler = Sampler([], rate_hz=0.1)  # next sample due in 10 s
    sampler.start()
    t0 = time.monotonic()
    assert sampler.stop() is True
    assert time.monotonic() - t0 < 1.0


def test_start_twice_rejected_and_restart_after_stop(tmp_path):
    sampler = Sampler([], rate_hz=10)
    sampler.start()
    try:
        with pytest.raises(RuntimeError):
            sampler.start()
    finally:
        sampler.stop()
    sampler.start()
    assert sampler.running
    assert sampler.stop()


def test_rates_come_from_deltas_between_samples(make_tree):
    root = make_tree("lattepanda")
    sampler = sampler_for(root, "x86")
    bump_proc_stat(root, 4, step=0)
    first = sampler.sample_once()
    assert values(first, "htfl_device_cpu_utilisation_ratio") == {}
    assert values(first, "htfl_device_worker_cpu_utilisation_ratio") == {}
    bump_proc_stat(root, 4, step=1)
    # Burn CPU in this (worker) process between two samples; the machine may be
    # shared, so compare with what os.times() says was consumed, not with wall time.
    t0 = os.times()
    t_end = time.monotonic() + 0.2
    while time.monotonic() < t_end:
        pass
    t1 = os.times()
    snap = sampler.sample_once()
    assert values(snap, "htfl_device_cpu_utilisation_ratio")[()] == pytest.approx(0.4)
    burnt = (t1.user + t1.system) - (t0.user + t0.system)
    cpu0 = values(first, "htfl_device_worker_cpu_seconds_total")[()]
    cpu1 = values(snap, "htfl_device_worker_cpu_seconds_total")[()]
    assert cpu1 - cpu0 == pytest.approx(burnt, abs=0.05)
    assert 0 < values(snap, "htfl_device_worker_cpu_utilisation_ratio")[()] <= 1.0
    assert values(snap, "htfl_device_worker_resident_memory_bytes")[()] > 10 * 2**20


def test_worker_utilisation_formula(monkeypatch):
    """CPU seconds per wall second, divided by the device's CPU count."""
    now = [100.0]
    probe = WorkerProcessProbe(clock=lambda: now[0], cpu_count=4)
    cpu = iter([(10.0, 1000), (13.0, 1000), (13.0, 1000)])
    monkeypatch.setattr(probe, "_measure", lambda: next(cpu))
    assert "htfl_device_worker_cpu_utilisation_ratio" not in {s.name for s in probe.read()}
    now[0] = 102.0  # 3 CPU seconds in 2 s on 4 CPUs -> 0.375
    out = {s.name: s.value for s in probe.read()}
    assert out["htfl_device_worker_cpu_utilisation_ratio"] == 0.375
    assert out["htfl_device_worker_cpu_seconds_total"] == 13.0
    now[0] = 103.0
    assert {s.name: s.value for s in probe.read()}["htfl_device_worker_cpu_utilisation_ratio"] == 0


class _Slow(Probe):
    name = "slow"

    def read(self):
        time.sleep(0.25)
        return [Series.of("htfl_device_round", 1)]


def test_overrun_skips_ticks_instead_of_bursting(tmp_path):
    sampler = Sampler([_Slow(SysReader(tmp_path))], rate_hz=10)
    sampler.start(initial_sample=False)
    time.sleep(0.9)
    sampler.stop()
    # 0.25 s per sample: at most ~4 samples in 0.9 s whatever the 10 Hz grid says.
    assert 2 <= sampler.latest.seq <= 5
    assert sampler.overruns >= 2


def test_snapshot_is_immutable_and_replaced_whole(make_tree):
    sampler = sampler_for(make_tree("jetson_nano"), "jetson")
    a = sampler.sample_once()
    b = sampler.sample_once()
    assert a is not b and b.seq == a.seq + 1 and sampler.latest is b
    with pytest.raises(AttributeError):
        a.seq = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        a.probes["cpu"] = False  # type: ignore[index]
    assert b.telemetry_cpu_seconds >= a.telemetry_cpu_seconds > 0
    assert b.duration_seconds > 0


def test_duplicate_series_from_two_probes_are_dropped(tmp_path):
    class Dup(Probe):
        def read(self):
            return [Series.of("htfl_device_round", 1)]

    class DupA(Dup):
        name = "a"

    class DupB(Dup):
        name = "b"

    snap = Sampler([DupA(SysReader(tmp_path)), DupB(SysReader(tmp_path))]).sample_once()
    assert len([s for s in snap.series if s.name == "htfl_device_round"]) == 1


def test_probe_names_must_be_unique(tmp_path):
    reader = SysReader(tmp_path)
    with pytest.raises(ValueError):
        Sampler([_Slow(reader), _Slow(reader)])
