"""Continuous-output meters (CSV line streams) and split-phase reads over a real pty."""

from __future__ import annotations

import time

import pytest

from htfl.device.power.config import MeterSpec, MeterSpecError, open_meter
from htfl.device.power.drivers.scpi import ScpiMeter
from htfl.device.power.drivers.stream import StreamMeter
from htfl.device.power.drivers.um import UMMeter
from htfl.device.power.meter import FrameError
from htfl.device.power.sampler import SerialSampler
from tests.support.meter_emulators import ScpiEmulator, StreamEmulator, UMEmulator, constant

from .helpers import wait_for


def test_device_clock_is_mapped_to_wall_clock():
    with StreamEmulator(constant(5.0, 0.25), rate_hz=1000, start_command="GO") as emu:
        meter = StreamMeter(emu.port, start_command="GO", rate_hz=1000, timeout=0.5)
        with meter:
            samples = meter.take(300)
            now = time.time()
    assert all(s.watts == pytest.approx(1.25) for s in samples)
    assert (samples[0].volts, samples[0].amps) == (5.0, 0.25)
    steps = [b.t - a.t for a, b in zip(samples[50:], samples[51:], strict=False)]
    assert steps == pytest.approx([0.001] * len(steps), abs=2e-4)  # device spacing kept
    assert now - 1.0 < samples[-1].t <= now + 0.05  # and anchored near this host's clock
    assert all(b.t > a.t for a, b in zip(samples, samples[1:], strict=False))
    assert meter.missed_samples == 0
    assert meter.frame_errors == 0
    assert emu.streaming


def test_garbage_lines_and_device_overruns_are_counted():
    with (
        StreamEmulator(constant(5.0, 0.1), rate_hz=2000) as emu,
        StreamMeter(emu.port, rate_hz=2000, timeout=0.5) as meter,
    ):
        meter.take(100)
        emu.inject_garbage_line(3)
        emu.inject_skip(7)
        got = meter.take(300)
    assert all(s.watts == pytest.approx(0.5) for s in got)
    assert meter.frame_errors == 3
    assert meter.missed_samples == 7


def test_stream_without_time_column_spreads_batches_at_the_nominal_rate():
    with StreamEmulator(constant(12.0, 0.5), rate_hz=1000, with_time=False) as emu:
        meter = StreamMeter(emu.port, columns=["volts", "amps"], rate_hz=1000, timeout=0.5)
        with meter:
            samples = meter.take(200)
    steps = [b.t - a.t for a, b in zip(samples, samples[1:], strict=False)]
    assert sorted(steps)[len(steps) // 2] == pytest.approx(0.001, abs=2e-4)
    assert all(s.watts == pytest.approx(6.0) for s in samples)


def test_stream_columns_are_validated():
    with pytest.raises(ValueError, match="unknown stream column"):
        StreamMeter("/dev/null", columns=["t", "mw"])
    with pytest.raises(ValueError, match="watts, or volts and amps"):
        StreamMeter("/dev/null", columns=["t", "volts"])
    with pytest.raises(ValueError, match="rate_hz"):
        StreamMeter("/dev/null", columns=["watts"])
    with pytest.raises(MeterSpecError, match="htfl_meter.rate_hz: missing"):
        MeterSpec.from_mapping({"driver": "stream", "port": "/dev/x", "columns": "watts"}, "d")
    spec = MeterSpec.from_mapping(
        {"driver": "stream", "port": "/dev/x", "columns": "t,_,watts", "time_scale": 0.001}, "d"
    )
    meter = open_meter(spec, open_now=False)
    assert isinstance(meter, StreamMeter)
    assert meter.columns == ("t", "_", "watts")
    assert spec.options["baudrate"] == 115200


def test_stream_survives_the_port_vanishing():
    with StreamEmulator(constant(5.0, 0.2), rate_hz=500) as emu:
        meter = StreamMeter(emu.port, rate_hz=500, timeout=0.1)
        sampler = SerialSampler(meter, backoff_initial=0.02, backoff_max=0.1)
        sampler.start()
        try:
            assert wait_for(lambda: sampler.samples_total >= 100)
            emu.vanish(0.4)
            assert wait_for(lambda: meter.reconnects == 1)
            n = sampler.samples_total
            assert wait_for(lambda: sampler.samples_total >= n + 100)
        finally:
            sampler.stop()
    disconnects = [g for g in sampler.gaps if g.reason == "disconnect"]
    assert len(disconnects) == 1
    assert disconnects[0].duration >= 0.35


def test_um_split_phase_request_then_collect():
    with UMEmulator("um25c", constant(5.0, 0.3)) as emu, UMMeter(emu.port, timeout=0.2) as meter:
        meter.request()
        t_request = meter._t
        time.sleep(0.02)  # the reply arrives meanwhile
        s = meter.collect()
        assert s.t == t_request  # timestamped when the meter was asked
        assert s.watts == pytest.approx(1.5)
        emu.inject_garbage()
        meter.request()
        time.sleep(0.02)
        assert meter.collect().watts == pytest.approx(1.5)
        assert meter.frame_errors == 1
        emu.inject_short_frame()
        meter.request()
        time.sleep(0.02)
        with pytest.raises(FrameError):
            meter.collect()
        assert meter.frame_errors == 2
        assert meter.collect().watts == pytest.approx(1.5)  # collect without request: reads
        frame = meter.read_frame()
        assert frame.model.name == "um25c" and frame.resistance_ohms == pytest.approx(16.7)


def test_scpi_split_phase_request_then_collect():
    with ScpiEmulator(constant(100.0, 0.5)) as emu, ScpiMeter(emu.port, timeout=0.2) as meter:
        meter.request()
        time.sleep(0.02)
        assert meter.collect().watts == pytest.approx(50.0)
        emu.inject_nan()
        meter.request()
        time.sleep(0.02)
        with pytest.raises(FrameError, match="no data"):
            meter.collect()
        assert meter.collect().watts == pytest.approx(50.0)
