"""UM24C/UM25C/UM34C: frame validation on public frame bytes, decoding through pyserial on a pty,
and every fault a real meter produces, each against the protocol emulator over a pty."""

from __future__ import annotations

import contextlib
import struct
import time

import pytest

from htfl.device.power.drivers.um import (
    FRAME_LEN,
    MODELS,
    UMMeter,
    decode_frame,
    find_header,
    frame_problem,
)
from htfl.device.power.meter import BadFrame, FrameError, MeterDisconnected
from tests.support.meter_emulators import UMEmulator, constant, encode_um_frame


def hand_frame(header: int, raw_v: int, raw_a: int, raw_mw: int, end: int = 0xFFF1) -> bytes:
    """A frame built from the published offsets, independently of both encoders."""
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


def public_um34c_frame() -> bytes:
    """The real UM34C dump published in github.com/sebastianha/um34c (README, "Data"), as bytes.

    That README lists every field a UM34C sent (5.03 V, 0 A, 0 W, 24 C / 75 F, group 0, empty
    groups, D+ and D- 0.01 V, mode 7 "DCP1.5A", record 0 mAh / 0 mWh, threshold 0.29 A, 0 s,
    not recording, timeout 1 min, brightness 5, 9999.9 ohm, screen 0) and the last two bytes as
    one number, 26786 = 0x68A2: byte 128 = 0x68, and byte 129 = 0xA2 is the checksum.
    """
    frame = bytearray(FRAME_LEN)
    for offset, fmt, value in [
        (0, ">H", 0x0D4C),
        (2, ">H", 503),
        (10, ">H", 24),
        (12, ">H", 75),
        (96, ">H", 1),
        (98, ">H", 1),
        (100, ">H", 7),
        (110, ">H", 29),
        (118, ">H", 1),
        (120, ">H", 5),
        (122, ">I", 99999),
        (128, ">H", 26786),
    ]:
        struct.pack_into(fmt, frame, offset, value)
    return bytes(frame)


def test_real_um34c_frame_from_the_public_dump_decodes():
    frame = public_um34c_frame()
    assert frame[128:] != b"\xff\xf1"  # the end marker UM24C/UM25C use is not there
    f = decode_frame(frame)
    assert f.model is MODELS["um34c"]
    assert (f.volts, f.amps, f.watts) == pytest.approx((5.03, 0.0, 0.0))
    assert (f.temp_c, f.temp_f, f.charging_mode, f.backlight) == (24, 75, 7, 5)
    assert f.dplus_volts == pytest.approx(0.01)
    assert f.record_threshold_amps == pytest.approx(0.29)
    assert f.resistance_ohms == pytest.approx(9999.9)


@pytest.mark.parametrize("offset", [3, 97, 121, 129])
def test_um34c_checksum_catches_a_changed_covered_byte(offset):
    frame = bytearray(public_um34c_frame())
    frame[offset] ^= 0x01
    with pytest.raises(FrameError, match="checksum"):
        decode_frame(bytes(frame))


def test_um34c_byte_128_may_take_any_value():
    frame = bytearray(public_um34c_frame())
    frame[128] = 0x6B  # the other value seen in the same dump's CSV
    assert frame_problem(frame) is None


@pytest.mark.parametrize(
    ("header", "raw_v", "raw_a", "raw_mw", "volts", "amps"),
    [
        (0x0963, 512, 1234, 6318, 5.12, 1.234),  # UM24C: 10 mV, 1 mA
        (0x09C9, 5123, 12345, 6324, 5.123, 1.2345),  # UM25C: 1 mV, 0.1 mA
    ],
)
def test_decode_hand_built_frames_per_model_scaling(header, raw_v, raw_a, raw_mw, volts, amps):
    f = decode_frame(hand_frame(header, raw_v, raw_a, raw_mw))
    assert f.model.header == header
    assert f.volts == pytest.approx(volts, abs=1e-9)
    assert f.amps == pytest.approx(amps, abs=1e-9)
    assert f.watts == pytest.approx(raw_mw / 1000)
    assert (f.temp_c, f.temp_f) == (31, 88)
    assert f.dplus_volts == pytest.approx(2.72)
    assert f.charging_mode == 2
    assert f.resistance_ohms == pytest.approx(123.4)


def test_corrupted_voltage_in_a_checksumless_frame_is_caught_by_its_power_field():
    # 0.5 A at 4.89 V is 2.445 W; the voltage field says 4.35 V: 2.175 W, far beyond 1 count.
    with pytest.raises(FrameError, match="power field"):
        decode_frame(hand_frame(0x09C9, 4350, 5000, 2445))
    # one count off in every field is within the resolution
    assert decode_frame(hand_frame(0x09C9, 4891, 5001, 2444)).volts == pytest.approx(4.891)


def test_decode_rejects_bad_frames():
    with pytest.raises(FrameError, match="end marker"):
        decode_frame(hand_frame(0x09C9, 1, 1, 0, end=0x1234))
    with pytest.raises(FrameError, match="marker"):
        decode_frame(hand_frame(0x1111, 1, 1, 0))
    with pytest.raises(FrameError, match="130"):
        decode_frame(hand_frame(0x09C9, 1, 1, 0)[:-1])


def test_emulator_frames_lay_fields_at_published_offsets():
    frame = encode_um_frame("um25c", 5.123, 1.2345, 6.321)
    assert struct.unpack_from(">HHHI", frame, 0) == (0x09C9, 5123, 12345, 6321)
    assert frame[-2:] == b"\xff\xf1"
    frame = encode_um_frame(
        "um34c",
        5.03,
        0.0,
        temp_c=24,
        temp_f=75,
        dplus_volts=0.01,
        dminus_volts=0.01,
        charging_mode=7,
        record_threshold_amps=0.29,
        screen_timeout_min=1,
        backlight=5,
        resistance_ohms=9999.9,
    )
    assert frame == public_um34c_frame()  # the emulator reproduces the real dump byte for byte


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
        UMMeter(emu.port, model="um25c", timeout=0.5) as meter,
    ):
        assert meter.read().watts == pytest.approx(2.5)
        emu.inject_garbage()
        assert meter.read().watts == pytest.approx(2.5)  # resynchronised within the reply
        assert meter.frame_errors == 1
        emu.inject_garbage(b"\x09\xc9" + b"\x00" * 40)  # a marker with no frame behind it
        assert meter.read().watts == pytest.approx(2.5)
        assert meter.frame_errors == 2
        assert meter.read().watts == pytest.approx(2.5)
        assert meter.frame_errors == 2


def test_short_frame_is_a_frame_error_and_stream_recovers():
    with (
        UMEmulator("um25c", constant(5.0, 0.5)) as emu,
        UMMeter(emu.port, model="um25c", timeout=0.3) as meter,
    ):
        emu.inject_short_frame(length=60)
        with pytest.raises(FrameError, match="short"):
            meter.read()
        assert meter.frame_errors == 1
        assert meter.read().watts == pytest.approx(2.5)
        assert meter.frame_errors == 1


@pytest.mark.parametrize("model", ["um25c", "um34c"])
def test_bad_frame_is_given_up_at_once_not_after_the_timeout(model):
    with (
        UMEmulator(model, constant(9.0, 2.0)) as emu,
        UMMeter(emu.port, model=model, timeout=5.0) as meter,
    ):
        emu.inject_bad_frame()
        with pytest.raises(BadFrame, match="checksum" if model == "um34c" else "end marker"):
            meter.read()
        assert (meter.bad_frames, meter.timeouts, meter.frame_errors) == (1, 0, 1)
        assert meter.read().watts == pytest.approx(18.0)


@pytest.mark.parametrize(("model", "offset"), [("um25c", 3), ("um24c", 5), ("um34c", 3)])
def test_corrupted_data_byte_is_detected_and_re_requested(model, offset):
    with (
        UMEmulator(model, constant(4.89, 0.5)) as emu,
        UMMeter(emu.port, model=model, timeout=5.0) as meter,
    ):
        emu.inject_corrupt_byte(offset=offset, xor=0x40)
        with pytest.raises(BadFrame):
            meter.read()
        assert meter.bad_frames == 1 and meter.timeouts == 0
        s = meter.read()
        assert (s.volts, s.amps) == pytest.approx((4.89, 0.5))


def own_reply(sample, t0: float) -> bool:
    """The ramp's reading (amps = seconds since t0) was latched after the sample's request."""
    return sample.amps - (sample.t - t0) > -0.01


def ramp_reader(meter: UMMeter, n: int) -> list:
    got = []
    for _ in range(n):
        with contextlib.suppress(FrameError):
            got.append(meter.read())
    return got


def test_late_reply_within_timeout_plus_settle_is_never_paired_with_a_later_request():
    """Amps encode when the meter latched the reading: each sample must carry its own."""
    t0 = time.time()
    ramp = lambda t: (5.0, (t - t0) % 60)  # noqa: E731 - 1 mA per ms
    with (
        UMEmulator("um34c", ramp) as emu,
        UMMeter(emu.port, model="um34c", timeout=0.3) as meter,
    ):
        meter.read()
        emu.inject_late(0.4)  # past the 0.3 s timeout, within timeout + settle (~0.52 s)
        got = ramp_reader(meter, 8)
    assert meter.timeouts == 1 and meter.stray_replies == 0
    assert len(got) == 7
    for s in got:
        # latched after its own request was sent (a busy machine may latch it later, never
        # earlier); a reply to an earlier request was latched >= one frame time (135 ms) before
        assert own_reply(s, t0)


def test_reply_later_than_settle_is_counted_and_costs_at_most_one_sample():
    """Without sequence numbers one such sample can be mispaired; the chain must not persist."""
    t0 = time.time()
    ramp = lambda t: (5.0, (t - t0) % 60)  # noqa: E731
    with (
        UMEmulator("um34c", ramp) as emu,
        UMMeter(emu.port, model="um34c", timeout=0.3) as meter,
    ):
        meter.read()
        emu.inject_late(0.9)
        got = ramp_reader(meter, 12)
    assert meter.timeouts >= 1 and meter.stray_replies >= 1
    own = [own_reply(s, t0) for s in got]
    # without sequence numbers a late reply can be taken by the next request, and on a loaded
    # machine that request's own reply can in turn be late for the one after (how long such a
    # chain runs depends on the scheduler); every chain starts at a late reply the driver
    # counts (a timeout or a stray reply) and ends, so there are at most that many chains and
    # never a lasting shift
    chains = sum(1 for i, ok in enumerate(own) if not ok and (i == 0 or own[i - 1]))
    assert chains <= meter.timeouts + meter.stray_replies
    # the injected reply's chain ends: a lasting shift would leave every later sample mispaired
    # (a later chain may start when the loaded emulator is late again; it is counted above)
    first_mispaired = own.index(False) if False in own else len(own)
    assert first_mispaired >= len(own) - 1 or any(own[first_mispaired:])


def test_split_reply_is_reassembled_without_error():
    with (
        UMEmulator("um25c", constant(5.0, 0.5)) as emu,
        UMMeter(emu.port, model="um25c", timeout=0.5) as meter,
    ):
        emu.inject_split(at=40, pause=0.1, count=2)
        got = meter.take(3)
    assert [s.watts for s in got] == pytest.approx([2.5] * 3)
    assert meter.frame_errors == 0 and emu.faults_served["split"] == 2


def test_unsolicited_garbage_between_requests_is_discarded_and_counted():
    with (
        UMEmulator("um34c", constant(5.0, 1.0)) as emu,
        UMMeter(emu.port, model="um34c", timeout=0.5) as meter,
    ):
        assert meter.read().watts == pytest.approx(5.0)
        emu.send_unsolicited(b"\x0d\x4c" + b"\x01" * 40)  # even a marker-like prefix
        time.sleep(0.15)  # the 42 bytes take ~44 ms on the line, before the next request
        assert meter.read().watts == pytest.approx(5.0)
        assert meter.stray_replies == 1
        assert meter.read().watts == pytest.approx(5.0)
        assert meter.stray_replies == 1


def test_many_faults_then_clean_stream():
    with (
        UMEmulator("um25c", constant(5.0, 0.2)) as emu,
        UMMeter(emu.port, model="um25c", timeout=0.3) as meter,
    ):
        emu.inject_garbage(count=3)
        emu.inject_short_frame(length=5)
        emu.inject_bad_end(count=2)
        emu.inject_garbage(b"\x0d\x4c\xff\xf1" * 10)
        got = meter.take(12)
        assert all(s.watts == pytest.approx(1.0) for s in got)
        # 3 garbage prefixes + 1 short + 2 bad ends + 1 marker-laden garbage
        assert meter.frame_errors == 7


def test_silent_meter_is_reported_as_disconnected():
    with (
        UMEmulator("um25c") as emu,
        UMMeter(emu.port, model="um25c", timeout=0.05, max_silent_reads=3, settle=0.01) as meter,
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
