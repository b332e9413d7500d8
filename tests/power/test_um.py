"""UM24C/UM25C/UM34C: frame layout, decoding through pyserial on a pty, resynchronisation."""

from __future__ import annotations

import struct

import pytest

from htfl.device.power.drivers.um import (
    FRAME_LEN,
    MODELS,
    UMMeter,
    decode_frame,
    find_header,
)
from htfl.device.power.meter import FrameError, MeterDisconnected
from tests.support.meter_emulators import UMEmulator, constant, encode_frame


def hand_frame(header: int, raw_v: int, raw_a: int, raw_mw: int, end: int = 0xFFF1) -> bytes:
    """A frame built from the published offsets, independently of the driver's encoder."""
    frame = bytearray(FRAME_LEN)
    struct.pack_into(">H", frame, 0, header)
    struct.pack_into(">H", frame, 2, raw_v)
    struct.pack_into(">H", frame, 4, raw_a)
    struct.pack_into(">I", frame, 6, raw_mw)
    struct.pack_into(">H", frame, 10, 31)  # degrees C
    struct.pack_into(">H", frame, 12, 88)  # degrees F
    struct.pack_into(">H", frame, 96, 272)  # D+ 2.72 V
    struct.pack_into(">H", frame, 100, 2)  # QC3.0
    struct.pack_into(">I", frame, 122, 1234)  # 123.4 ohm
    struct.pack_into(">H", frame, 128, end)
    return bytes(frame)


@pytest.mark.parametrize(
    ("header", "raw_v", "raw_a", "volts", "amps"),
    [
        (0x0963, 512, 1234, 5.12, 1.234),  # UM24C: 10 mV, 1 mA
        (0x09C9, 5123, 12345, 5.123, 1.2345),  # UM25C: 1 mV, 0.1 mA
        (0x0D4C, 901, 2000, 9.01, 2.0),  # UM34C: 10 mV, 1 mA
    ],
)
def test_decode_hand_built_frames_per_model_scaling(header, raw_v, raw_a, volts, amps):
    f = decode_frame(hand_frame(header, raw_v, raw_a, 6321))
    assert f.model.header == header
    assert f.volts == pytest.approx(volts, abs=1e-9)
    assert f.amps == pytest.approx(amps, abs=1e-9)
    assert f.watts == pytest.approx(6.321)
    assert (f.temp_c, f.temp_f) == (31, 88)
    assert f.dplus_volts == pytest.approx(2.72)
    assert f.charging_mode == 2
    assert f.resistance_ohms == pytest.approx(123.4)


def test_decode_rejects_bad_frames():
    with pytest.raises(FrameError, match="end marker"):
        decode_frame(hand_frame(0x09C9, 1, 1, 1, end=0x1234))
    with pytest.raises(FrameError, match="marker"):
        decode_frame(hand_frame(0x1111, 1, 1, 1))
    with pytest.raises(FrameError, match="130"):
        decode_frame(hand_frame(0x09C9, 1, 1, 1)[:-1])


def test_encoder_lays_out_fields_at_published_offsets():
    frame = encode_frame("um25c", 5.123, 1.2345, 6.321)
    assert len(frame) == FRAME_LEN
    assert struct.unpack_from(">HHHI", frame, 0) == (0x09C9, 5123, 12345, 6321)
    assert frame[-2:] == b"\xff\xf1"
    frame = encode_frame("um24c", 5.12, 1.234)
    assert struct.unpack_from(">HHHI", frame, 0) == (0x0963, 512, 1234, 6318)


def test_find_header_finds_earliest_marker():
    assert find_header(b"xx\x0d\x4cyy\x09\x63") == 2
    assert find_header(b"\x09\x09\xc9") == 1
    assert find_header(b"nothing") == -1


@pytest.mark.parametrize(
    ("model", "volts", "amps", "watts"),
    [
        ("um24c", 5.12, 0.456, 2.335),
        ("um25c", 5.123, 0.4567, 2.340),
        ("um34c", 12.05, 1.5, 18.075),
    ],
)
def test_pty_emulator_frames_decode_to_volts_amps_watts(model, volts, amps, watts):
    with UMEmulator(model, constant(volts, amps)) as emu:
        meter = UMMeter(emu.port, model=model, timeout=0.5, device="dev-1")
        with meter:
            samples = meter.take(3)
    for s in samples:
        assert s.volts == pytest.approx(volts, abs=1e-9)
        assert s.amps == pytest.approx(amps, abs=1e-9)
        assert s.watts == pytest.approx(watts, abs=5e-4)
        assert s.source == model
        assert not s.charging
    assert samples[0].t < samples[1].t < samples[2].t
    assert meter.frame_errors == 0
    assert emu.requests == 3


def test_model_is_taken_from_the_frame_marker():
    with (
        UMEmulator("um24c", constant(5.0, 1.0)) as emu,
        UMMeter(emu.port, model="um25c", timeout=0.5) as meter,
    ):
        s = meter.read()
        assert meter.detected_model is MODELS["um24c"]
        assert (s.volts, s.amps) == pytest.approx((5.0, 1.0))


def test_garbage_before_frame_is_skipped_and_counted():
    with (
        UMEmulator("um25c", constant(5.0, 0.5)) as emu,
        UMMeter(emu.port, model="um25c", timeout=0.3) as meter,
    ):
        assert meter.read().watts == pytest.approx(2.5)
        emu.inject_garbage()
        s = meter.read()  # resynchronised on the marker inside the same reply
        assert s.watts == pytest.approx(2.5)
        assert meter.frame_errors == 1
        # garbage that contains a marker-looking byte pair but no end marker behind it
        emu.inject_garbage(b"\x09\xc9" + b"\x00" * 40)
        assert meter.read().watts == pytest.approx(2.5)
        assert meter.frame_errors == 2
        assert meter.read().watts == pytest.approx(2.5)
        assert meter.frame_errors == 2


def test_short_frame_is_a_frame_error_and_stream_recovers():
    with (
        UMEmulator("um25c", constant(5.0, 0.5)) as emu,
        UMMeter(emu.port, model="um25c", timeout=0.15) as meter,
    ):
        emu.inject_short_frame(length=60)
        with pytest.raises(FrameError, match="short"):
            meter.read()
        assert meter.frame_errors == 1
        s = meter.read()
        assert s.watts == pytest.approx(2.5)
        assert meter.frame_errors == 1


def test_corrupt_end_marker_is_skipped():
    with (
        UMEmulator("um34c", constant(9.0, 2.0)) as emu,
        UMMeter(emu.port, model="um34c", timeout=0.15) as meter,
    ):
        emu.inject_bad_end()
        with pytest.raises(FrameError):
            meter.read()
        assert meter.frame_errors == 1
        assert meter.read().watts == pytest.approx(18.0)


def test_many_faults_then_clean_stream():
    with (
        UMEmulator("um25c", constant(5.0, 0.2)) as emu,
        UMMeter(emu.port, model="um25c", timeout=0.1) as meter,
    ):
        emu.inject_garbage(count=3)
        emu.inject_short_frame(length=5)
        emu.inject_bad_end(count=2)
        emu.inject_garbage(b"\x0d\x4c\xff\xf1" * 10)
        got = meter.take(20)
        assert all(s.watts == pytest.approx(1.0) for s in got)
        # 3 garbage prefixes + 1 short + 2 bad ends + 1 marker-laden garbage
        assert meter.frame_errors == 7


def test_silent_meter_is_reported_as_disconnected():
    with (
        UMEmulator("um25c") as emu,
        UMMeter(emu.port, model="um25c", timeout=0.05, max_silent_reads=3) as meter,
    ):
        emu.inject_silence(count=3)
        for _ in range(2):
            with pytest.raises(FrameError, match="no reply"):
                meter.read()
        with pytest.raises(MeterDisconnected):
            meter.read()
        assert meter.frame_errors == 3
        assert meter.timeouts == 3


def test_opening_a_missing_port_raises_oserror(tmp_path):
    meter = UMMeter(str(tmp_path / "no-such-port"), timeout=0.1)
    with pytest.raises(OSError):
        meter.open()
    assert not meter.is_open
