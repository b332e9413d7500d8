"""RuiDeng (RDTech) UM24C / UM25C / UM34C USB power meters over (Bluetooth) serial.

Protocol (9600 baud 8N1, big-endian): the host writes the single byte ``0xF0`` ("send a data
dump") and the meter answers with a 130-byte frame:

======  ====  ===================================================================
offset  size  field
======  ====  ===================================================================
0       2     model marker: ``0x0963`` UM24C, ``0x09C9`` UM25C, ``0x0D4C`` UM34C
2       2     bus voltage: UM25C mV (/1000), UM24C/UM34C 10 mV (/100)
4       2     current: UM25C 0.1 mA (/10000), UM24C/UM34C mA (/1000)
6       4     power, mW (/1000) on every model
10      2     temperature, degrees C
12      2     temperature, degrees F
14      2     selected data group (0-9)
16      80    10 data groups of (mAh u32, mWh u32)
96      2     USB D+ voltage, 10 mV
98      2     USB D- voltage, 10 mV
100     2     charging mode index (0 unknown, 1 QC2.0, 2 QC3.0, 3-6 Apple, 7 DCP, 8 Samsung)
102     4     threshold recording: mAh
106     4     threshold recording: mWh
110     2     recording threshold, 10 mA
112     4     threshold recording duration, s
116     2     recording active (0/1)
118     2     screen timeout, minutes
120     2     backlight (0-5)
122     4     load resistance, 0.1 ohm
126     2     current screen index
128     2     UM24C/UM25C: end marker ``0xFFF1``; UM34C: byte 128 varies, byte 129 is a checksum
======  ====  ===================================================================

Validation. A UM34C frame is checked by its checksum: byte 129 is the XOR of the bytes at the
fixed positions :data:`UM34C_CHECKSUM_POSITIONS` (the odd, low-order bytes of most fields; the
positions are the ones the sigrok project documents for this meter, and the real UM34C dump
published in ``sebastianha/um34c`` satisfies it). UM24C/UM25C frames carry no checksum, only the
end marker, so they are also checked for consistency: the power field must agree with volts x
amps within what the fields' resolution allows (:func:`power_inconsistency`) - which catches a
corrupted voltage or current byte. The consistency check applies to UM34C frames too, because
the checksum covers no high-order byte.

Sources are listed in ``docs/power.md``. Only the electrical fields matter for power
sampling; the others are decoded by :func:`decode_frame` for completeness.

A sample's timestamp is taken just before the request byte is written: the meter latches the
values it reports when the request arrives, and at 9600 baud the 130-byte reply itself takes
~135 ms on the wire (so one meter gives at most ~7 samples/s; the display refreshes ~2/s).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from htfl.device.power.meter import (
    BadFrame,
    Clock,
    FrameError,
    MeterDisconnected,
    PowerSample,
)
from htfl.device.power.serial_link import SerialMeter

FRAME_LEN = 130
REQUEST = b"\xf0"
END_MARKER = 0xFFF1
_END = END_MARKER.to_bytes(2, "big")
FRAME_STRUCT = struct.Struct(">HHHIHHH20IHHHIIHIHHHIHH")
_ELECTRICAL = struct.Struct(">HHHI")
assert FRAME_STRUCT.size == FRAME_LEN
#: Byte positions whose XOR is a UM34C frame's byte 129 (see the module docstring).
UM34C_CHECKSUM_POSITIONS = (
    1, 3, 7, 9, 15, 17, 19, 23, 31, 39, 41, 45, 49, 53, 55, 57,
    59, 63, 67, 69, 73, 79, 83, 89, 97, 99, 109, 111, 113, 119, 121, 127,
)  # fmt: skip
#: Seconds one 130-byte frame takes on the wire at 9600 baud 8N1 (10 bits per byte).
FRAME_SECONDS_9600 = FRAME_LEN * 10 / 9600


@dataclass(frozen=True, slots=True)
class UMModel:
    name: str
    header: int
    volts_per_count: float
    amps_per_count: float

    @property
    def header_bytes(self) -> bytes:
        return self.header.to_bytes(2, "big")


UM24C = UMModel("um24c", 0x0963, 1 / 100, 1 / 1000)
UM25C = UMModel("um25c", 0x09C9, 1 / 1000, 1 / 10000)
UM34C = UMModel("um34c", 0x0D4C, 1 / 100, 1 / 1000)
MODELS: dict[str, UMModel] = {m.name: m for m in (UM24C, UM25C, UM34C)}
MODELS_BY_HEADER: dict[int, UMModel] = {m.header: m for m in MODELS.values()}
_HEADERS = tuple(m.header_bytes for m in MODELS.values())
_HEADER_FIRST_BYTES = frozenset(h[0] for h in _HEADERS)


def um34c_checksum(frame: bytes | bytearray | memoryview) -> int:
    """The checksum a UM34C puts in byte 129 of ``frame``."""
    x = 0
    for i in UM34C_CHECKSUM_POSITIONS:
        x ^= frame[i]
    return x


def power_inconsistency(model: UMModel, raw_v: int, raw_a: int, raw_mw: int) -> float | None:
    """By how many watts the power field misses volts x amps beyond the fields' resolution.

    ``None`` when the three fields agree. Each field may be truncated or rounded by up to one
    count, so ``|V*I - P| <= V*dI + I*dV + dV*dI + dP`` holds for every genuine frame.
    """
    dv, di, dp = model.volts_per_count, model.amps_per_count, 0.001
    volts, amps, watts = raw_v * dv, raw_a * di, raw_mw * dp
    miss = abs(volts * amps - watts)
    bound = volts * di + amps * dv + dv * di + dp + 1e-9
    return None if miss <= bound else miss - bound


def frame_problem(frame: bytes | bytearray | memoryview) -> str | None:
    """Why the first 130 bytes of ``frame`` are not a valid frame, or ``None`` if they are."""
    header, raw_v, raw_a, raw_mw = _ELECTRICAL.unpack_from(frame)
    model = MODELS_BY_HEADER.get(header)
    if model is None:
        return f"unknown UM model marker 0x{header:04X}"
    if model is UM34C:
        want, got = um34c_checksum(frame), frame[FRAME_LEN - 1]
        if want != got:
            return f"bad UM34C checksum 0x{got:02X} (expected 0x{want:02X})"
    elif frame[FRAME_LEN - 2 : FRAME_LEN] != _END:
        end = int.from_bytes(frame[FRAME_LEN - 2 : FRAME_LEN], "big")
        return f"bad UM end marker 0x{end:04X}"
    miss = power_inconsistency(model, raw_v, raw_a, raw_mw)
    if miss is not None:
        return f"power field contradicts volts x amps by {miss:.3f} W (corrupted field)"
    return None


@dataclass(frozen=True, slots=True)
class UMFrame:
    """Every field of one decoded frame (see the module docstring for units)."""

    model: UMModel
    volts: float
    amps: float
    watts: float
    temp_c: int
    temp_f: int
    group: int
    groups: tuple[tuple[float, float], ...]  # (Ah, Wh) per data group
    dplus_volts: float
    dminus_volts: float
    charging_mode: int
    record_ah: float
    record_wh: float
    record_threshold_amps: float
    record_seconds: int
    recording: bool
    screen_timeout_min: int
    backlight: int
    resistance_ohms: float
    screen: int


def decode_frame(frame: bytes | bytearray | memoryview) -> UMFrame:
    """Decode one complete 130-byte frame; raises :class:`FrameError` if it is not one."""
    if len(frame) != FRAME_LEN:
        raise FrameError(f"UM frame must be {FRAME_LEN} bytes, got {len(frame)}")
    problem = frame_problem(frame)
    if problem is not None:
        raise FrameError(problem)
    f = FRAME_STRUCT.unpack(frame)
    model = MODELS_BY_HEADER[f[0]]
    groups = tuple((f[7 + 2 * i] / 1000, f[8 + 2 * i] / 1000) for i in range(10))
    rest = f[27:]
    return UMFrame(
        model=model,
        volts=f[1] * model.volts_per_count,
        amps=f[2] * model.amps_per_count,
        watts=f[3] / 1000,
        temp_c=f[4],
        temp_f=f[5],
        group=f[6],
        groups=groups,
        dplus_volts=rest[0] / 100,
        dminus_volts=rest[1] / 100,
        charging_mode=rest[2],
        record_ah=rest[3] / 1000,
        record_wh=rest[4] / 1000,
        record_threshold_amps=rest[5] / 100,
        record_seconds=rest[6],
        recording=bool(rest[7]),
        screen_timeout_min=rest[8],
        backlight=rest[9],
        resistance_ohms=rest[10] / 10,
        screen=rest[11],
    )


def find_header(buf: bytes | bytearray, start: int = 0) -> int:
    """Index of the earliest known model marker in ``buf`` at or after ``start``, or -1."""
    best = -1
    for h in _HEADERS:
        i = buf.find(h, start)
        if i >= 0 and (best < 0 or i < best):
            best = i
    return best


class UMMeter(SerialMeter):
    """UM24C/UM25C/UM34C request/response reader with resynchronisation.

    The configured ``model`` only sets the ``source`` label: each frame is decoded with the
    scaling of the model whose marker it carries (``detected_model``), so a UM24C configured as
    ``um25c`` still reads correctly.

    Faults and what the reader does about each (all counted, see ``docs/power.md``):

    * bytes that are not part of a valid frame (garbage, short frames, a frame that fails
      :func:`frame_problem`) are skipped by searching for the next marker; each skipped run
      counts one ``frame_errors``;
    * a complete reply that is invalid raises :class:`~htfl.device.power.meter.BadFrame` at once
      (``bad_frames``), so the sampler asks again without waiting out the timeout;
    * a reply that does not come within ``timeout`` counts in ``timeouts``; before the next
      request the input is flushed, the reader waits ``settle`` seconds (a late reply still on
      the wire arrives meanwhile) and flushes again, so that no late reply is taken as the answer
      to a later request;
    * bytes already waiting when a request is about to go out were asked for by nobody (a reply
      later than ``timeout + settle``, or unsolicited output): they are discarded and counted in
      ``stray_replies``;
    * after ``max_silent_reads`` replies in a row with no data at all the link is declared lost
      (raises :class:`MeterDisconnected`) so that the sampler reopens it - an RFCOMM link to a
      meter that went out of range stays "open" but silent.
    """

    driver = "um"

    def __init__(
        self,
        port: str,
        *,
        model: str = "um25c",
        baudrate: int = 9600,
        timeout: float = 1.0,
        max_silent_reads: int = 5,
        settle: float | None = None,
        device: str = "",
        source: str | None = None,
        clock: Clock = time.time,
    ):
        if model not in MODELS:
            raise ValueError(f"unknown UM model {model!r}; expected one of {sorted(MODELS)}")
        super().__init__(
            port,
            baudrate=baudrate,
            timeout=timeout,
            device=device,
            source=source or model,
            clock=clock,
        )
        self.model = MODELS[model]
        self.detected_model: UMModel | None = None
        self.max_silent_reads = max_silent_reads
        #: One frame's time on the wire plus a margin: long enough for a reply already being
        #: sent to finish arriving.
        self.settle = settle if settle is not None else 1.5 * self.nominal_period + 0.02
        self.last_frame: UMFrame | None = None
        self.last_problem = ""
        self._buf = bytearray()
        self._skipping = False
        self._flush = False
        self._settle_next = False
        self._rejected = False
        self._silent = 0
        self._t = 0.0
        self._pending = False
        self._last_raw = b""
        self._keep_raw = False

    @property
    def nominal_period(self) -> float:
        """Seconds per sample when read back to back: the reply's time on the wire."""
        return FRAME_LEN * 10 / self.baudrate

    def _on_open(self) -> None:
        self._pending = False
        self._buf.clear()
        self._skipping = False
        self._flush = False
        self._settle_next = False
        self._rejected = False
        self._silent = 0

    def _skip(self, n: int) -> None:
        """Drop ``n`` leading bytes that are not a valid frame; one error per skipped run."""
        del self._buf[:n]
        if not self._skipping:
            self._skipping = True
            self.frame_errors += 1

    def _extract(self) -> PowerSample | None:
        buf = self._buf
        while buf:
            i = 0 if buf[:2] in _HEADERS else find_header(buf, 1)
            if i < 0:
                # Keep a trailing byte that may be the first half of a marker.
                keep = 1 if buf[-1] in _HEADER_FIRST_BYTES else 0
                if len(buf) > keep:
                    self._skip(len(buf) - keep)
                return None
            if i > 0:
                self._skip(i)
            if len(buf) < FRAME_LEN:
                return None
            problem = frame_problem(buf)
            if problem is not None:
                self.last_problem = problem
                self._rejected = True
                self._skip(2)  # a marker without a valid frame behind it: look further on
                continue
            header, raw_v, raw_a, raw_p = _ELECTRICAL.unpack_from(buf)
            model = MODELS_BY_HEADER[header]
            self.detected_model = model
            self._skipping = False
            self._rejected = False
            if self._keep_raw:
                self._last_raw = bytes(buf[:FRAME_LEN])
            del buf[:FRAME_LEN]
            if buf:
                self._flush = True  # trailing bytes after a frame: resync before next request
            return PowerSample(
                self._t,
                raw_p / 1000,
                raw_v * model.volts_per_count,
                raw_a * model.amps_per_count,
                self.source,
            )
        return None

    def _reject_now(self) -> None:
        """A complete but invalid reply and nothing after it: give up on it at once."""
        buf = self._buf
        if buf and buf[:2] in _HEADERS:
            return  # another frame has started arriving: wait for it
        if buf:
            self._skip(len(buf))
        self._skipping = False
        self._rejected = False
        self._flush = True
        self.bad_frames += 1
        raise BadFrame(f"{self.port}: {self.last_problem}")

    def read_frame(self) -> UMFrame:
        """Read one sample and return the whole decoded frame (slower; for probing)."""
        self._keep_raw = True
        try:
            self.read()
        finally:
            self._keep_raw = False
        return decode_frame(self._last_raw)

    supports_split = True

    def request(self) -> None:
        """Send the ``0xF0`` request; the sample is timestamped now."""
        buf = self._buf
        if buf:
            self._skip(len(buf))  # leftovers of an earlier reply
            self._skipping = False
            self._flush = True
        if self._settle_next:
            # The last request timed out: its reply may still come. Let it, then drop it.
            self._port().reset_input_buffer()
            time.sleep(self.settle)
            self._drain_until_quiet()
            self._settle_next = False
        if self._read_available():
            # Nobody asked for these bytes: a reply later than timeout + settle, or output the
            # meter sent on its own. Taking them as this request's answer would shift every
            # later sample by one request.
            self.stray_replies += 1
            self.frame_errors += 1
            self._drain_until_quiet()
        if self._flush:
            self._port().reset_input_buffer()
            self._flush = False
        self._rejected = False
        self._t = self._clock()
        self._write_fast(REQUEST)
        self._pending = True

    def _drain_until_quiet(self) -> None:
        """Discard input until the line has been quiet for a few byte times.

        Bounded by one frame's time on the wire, so a meter that never stops talking costs at
        most that; whatever is left is flushed.
        """
        quiet = max(0.01, 20 * 10 / self.baudrate)
        deadline = time.monotonic() + self.nominal_period + quiet
        last = time.monotonic()
        while (now := time.monotonic()) < deadline and now - last < quiet:
            if self._read_available():
                last = time.monotonic()
            else:
                time.sleep(quiet / 4)
        self._flush = True

    def collect(self) -> PowerSample:
        """Return the reply to the last :meth:`request` (waits up to ``timeout`` for it)."""
        if not self._pending:
            self.request()
        self._pending = False
        buf = self._buf
        chunk = self._read_available()  # usually the whole reply, when called after a pause
        if chunk:
            self._silent = 0
            buf += chunk
            sample = self._extract()
            if sample is not None:
                return sample
            if self._rejected:
                self._reject_now()
        return self._wait_for_frame(got_any=bool(chunk))

    def read(self) -> PowerSample:
        self.request()
        self._pending = False
        return self._wait_for_frame(got_any=False)

    def _wait_for_frame(self, got_any: bool) -> PowerSample:
        ser = self._port()
        buf = self._buf
        while True:
            # After _extract, buf is empty, one byte that may start a marker, or a partial
            # frame that starts with a marker: in every case this is what completes a frame.
            need = FRAME_LEN - len(buf)
            chunk = ser.read(need)
            if chunk:
                got_any = True
                self._silent = 0
                buf += chunk
                sample = self._extract()
                if sample is not None:
                    return sample
                if self._rejected:
                    self._reject_now()
                if len(chunk) >= need:
                    continue  # got what we asked for but no frame yet: keep reading
            # Timed out before a complete frame arrived.
            self.timeouts += 1
            self._settle_next = True
            if got_any:
                if buf:
                    self._skip(len(buf))
                self._skipping = False
                raise FrameError(f"{self.port}: short or corrupt UM frame")
            self.frame_errors += 1
            self._silent += 1
            if self._silent >= self.max_silent_reads:
                self._silent = 0
                raise MeterDisconnected(
                    f"{self.port}: no reply to {self.max_silent_reads} requests in a row"
                )
            raise FrameError(f"{self.port}: no reply within {self.timeout} s")
