"""Sampler threads: reconnect with backoff when the port vanishes, gaps, running energy."""

from __future__ import annotations

import os
import time

import pytest

from htfl.device.power.drivers.scpi import ScpiMeter
from htfl.device.power.drivers.um import UMMeter
from htfl.device.power.meter import PowerSample
from htfl.device.power.sampler import Sampler, SerialSampler
from tests.support.meter_emulators import ScpiEmulator, UMEmulator, constant

from .helpers import ScriptedMeter, wait_for


def test_um_port_vanishing_is_survived_with_backoff_reconnect_and_gap():
    with UMEmulator("um25c", constant(5.0, 0.4)) as emu:
        first_slave = emu.slave_path
        meter = UMMeter(emu.port, model="um25c", timeout=0.5, device="nano-1")
        sampler = SerialSampler(
            meter, interval=0.002, backoff_initial=0.02, backoff_max=0.16, backoff_factor=2.0
        )
        sampler.start()
        try:
            assert wait_for(lambda: sampler.samples_total >= 20)
            before = sampler.samples_total
            emu.vanish(0.6)
            assert wait_for(lambda: not os.path.lexists(emu.port), timeout=2)
            assert wait_for(lambda: meter.reconnects == 1, timeout=5)
            assert wait_for(lambda: sampler.samples_total >= before + 20)
            assert sampler.is_alive()
        finally:
            sampler.stop()
        assert not sampler.is_alive()
        assert emu.vanish_count == 1
        assert os.path.realpath(emu.port) == emu.slave_path
        assert first_slave is not None
        # exponential backoff, capped
        delays = sampler.backoff_delays
        assert delays[:4] == pytest.approx([0.02, 0.04, 0.08, 0.16])
        assert max(delays) == pytest.approx(0.16)
        assert sampler.open_failures >= 4
        # one disconnect gap that spans the outage
        disconnects = [g for g in sampler.gaps if g.reason == "disconnect"]
        assert len(disconnects) == 1
        assert disconnects[0].duration >= 0.55
        assert sampler.gap_count >= 1
        assert sampler.errors == 0
        samples = sampler.drain()
        assert len(samples) == sampler.samples_total
        assert all(s.watts == pytest.approx(2.0) for s in samples)
        # energy is not integrated across the outage
        span = samples[-1].t - samples[0].t
        assert sampler.energy_joules < 2.0 * (span - 0.55)
        assert sampler.energy_joules > 0


def test_sampler_waits_for_a_port_that_appears_later(tmp_path):
    emu = UMEmulator("um24c", constant(5.0, 1.0), link_path=str(tmp_path / "rfcomm0"))
    meter = UMMeter(emu.port, model="um24c", timeout=0.5)
    sampler = SerialSampler(meter, interval=0.01, backoff_initial=0.01, backoff_max=0.05)
    sampler.start()
    try:
        assert wait_for(lambda: sampler.open_failures >= 3)
        assert sampler.samples_total == 0
        emu.start()
        assert wait_for(lambda: sampler.samples_total >= 5)
    finally:
        sampler.stop()
        emu.stop()
    assert meter.reconnects == 0  # the first connection is not a reconnect
    assert sampler.latest is not None and sampler.latest.watts == pytest.approx(5.0)


def test_frame_errors_are_counted_while_streaming():
    with UMEmulator("um25c", constant(5.0, 0.5)) as emu:
        meter = UMMeter(emu.port, model="um25c", timeout=0.5)
        sampler = SerialSampler(meter, interval=0.002)
        sampler.start()
        try:
            assert wait_for(lambda: sampler.samples_total >= 10)
            emu.inject_garbage(count=2)
            emu.inject_short_frame()
            assert wait_for(lambda: sampler.frame_errors == 3)
            n = sampler.samples_total
            assert wait_for(lambda: sampler.samples_total >= n + 10)
        finally:
            sampler.stop()
        assert sampler.frame_errors == 3
        assert meter.reconnects == 0


def test_scpi_reconnect_resends_setup():
    with ScpiEmulator(constant(230.0, 0.05)) as emu:
        meter = ScpiMeter(emu.port, timeout=0.1)
        sampler = SerialSampler(meter, interval=0.005, backoff_initial=0.02, backoff_max=0.1)
        sampler.start()
        try:
            assert wait_for(lambda: sampler.samples_total >= 5)
            emu.vanish(0.3)
            assert wait_for(lambda: meter.reconnects == 1)
            n = sampler.samples_total
            assert wait_for(lambda: sampler.samples_total >= n + 5)
        finally:
            sampler.stop()
        assert emu.commands.count("COMM:REM ON") == 2
        assert [g.reason for g in sampler.gaps].count("disconnect") == 1


def _s(t: float, w: float, charging: bool = False) -> PowerSample:
    return PowerSample(t, w, None, None, "scripted", charging)


def run_script(script, **kwargs) -> Sampler:
    meter = ScriptedMeter(script, device="d1")
    sampler = Sampler(meter, interval=0.0, backoff_initial=0.001, **kwargs)
    sampler.start()
    assert wait_for(lambda: meter.exhausted > 0)  # every scripted item has been handled
    sampler.stop()
    return sampler


def test_running_energy_and_gaps_follow_the_energy_rules():
    # 1 Hz samples at 2 W; 20 of them establish the median period; then a 10 s hole
    script = [_s(float(t), 2.0) for t in range(20)]
    script += [_s(30.0, 2.0), _s(31.0, 4.0)]
    script += [_s(32.0, 4.0, charging=True), _s(33.0, 4.0)]
    sampler = run_script(script)
    # 19 s at 2 W, hole 19..30 skipped, 30..31 ramp 2->4 = 3 J, charging segments skipped
    assert sampler.energy_joules == pytest.approx(19 * 2.0 + 3.0)
    assert [(g.start, g.end, g.reason) for g in sampler.gaps] == [(19.0, 30.0, "gap")]
    assert sampler.samples_total == 24
    assert sampler.latest == script[-1]


def test_unexpected_driver_errors_do_not_kill_the_thread():
    script = [_s(0.0, 1.0), RuntimeError("driver bug"), _s(1.0, 1.0), OSError("gone"), _s(2.0, 1.0)]
    sampler = run_script(script)
    assert sampler.samples_total == 3
    assert sampler.errors == 1
    assert sampler.meter.reconnects == 2
    assert sampler.meter.opens == 3
    assert [g.reason for g in sampler.gaps] == ["disconnect", "disconnect"]


def test_full_buffer_drops_oldest_and_counts():
    script = [_s(float(t), 1.0) for t in range(10)]
    sampler = run_script(script, buffer_size=4)
    assert sampler.dropped == 6
    assert [s.t for s in sampler.drain()] == [6.0, 7.0, 8.0, 9.0]
    assert sampler.drain() == []


def test_callback_errors_are_contained():
    seen: list[float] = []

    def callback(sample: PowerSample) -> None:
        seen.append(sample.t)
        if sample.t == 1.0:
            raise ValueError("consumer bug")

    sampler = run_script([_s(0.0, 1.0), _s(1.0, 1.0), _s(2.0, 1.0)], on_sample=callback)
    assert seen == [0.0, 1.0, 2.0]
    assert sampler.errors == 1


def test_link_that_fails_right_after_reopening_backs_off_exponentially():
    class FlakyMeter(ScriptedMeter):
        """Opens fine but every read says the port is gone."""

        def read(self):
            self.exhausted += 1
            raise OSError("port vanished again")

    meter = FlakyMeter([], device="d")
    sampler = Sampler(meter, interval=0.0, backoff_initial=0.01, backoff_max=0.08)
    sampler.start()
    time.sleep(0.5)
    sampler.stop()
    # waits 0.01, 0.02, 0.04, 0.08, 0.08, ...: about 8 attempts in 0.5 s, not 50
    assert 4 <= meter.opens <= 12
    assert sampler.is_alive() is False
    assert sampler.samples_total == 0


def test_silence_in_the_first_seconds_is_a_gap_not_interpolated():
    """Two samples, then the meter stops answering for a second: the very first spacings are
    judged against the meter's own period, so the silence is not drawn across as energy."""
    with UMEmulator("um25c", constant(5.0, 1.0)) as emu:
        emu.silence_for(1.0, after=2)
        meter = UMMeter(emu.port, model="um25c", timeout=0.3, settle=0.05)
        sampler = SerialSampler(meter)
        sampler.start()
        try:
            assert wait_for(lambda: sampler.samples_total >= 6, timeout=10)
        finally:
            sampler.stop()
    gaps = [g for g in sampler.gaps if g.reason == "gap"]
    assert any(g.duration >= 0.9 for g in gaps)  # (a loaded machine may add a short one)
    samples = sampler.drain()
    span = samples[-1].t - samples[0].t
    covered = span - sum(g.duration for g in gaps)
    assert sampler.energy_joules == pytest.approx(5.0 * covered, rel=0.01)
    assert meter.timeouts >= 2


def test_bad_frame_is_asked_for_again_at_once_by_a_paced_sampler():
    """A garbled reply costs one re-request, not a period: the sample is still taken on time."""
    with UMEmulator("um34c", constant(5.0, 1.0)) as emu:
        emu.inject_bad_frame()  # the answer to the first request
        meter = UMMeter(emu.port, model="um34c", timeout=1.0)
        sampler = Sampler(meter, interval=2.0)
        started = time.time()
        sampler.start()
        try:
            assert wait_for(lambda: sampler.samples_total >= 1, timeout=6)
        finally:
            sampler.stop()
    samples = sampler.drain()
    assert meter.bad_frames == 1 and meter.timeouts == 0
    # collected at start + 2 s, found garbled, asked again at once: not at start + 4 s
    assert samples[0].t - started < 3.0
    assert sampler.gap_count == 0
