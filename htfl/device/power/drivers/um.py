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
128     2     end marker ``0xFFF1``
======  ====  ===================================================================

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

from htfl.device.power.meter import Clock, FrameError, MeterDisconnected, PowerSample
from htfl.device.power.serial_link import SerialMeter

FRAME_LEN = 130
REQUEST = b"\xf0"
END_MARKER = 0xFFF1
_END = END_MARKER.to_bytes(2, "big")
FRAME_STRUCT = struct.Struct(">HHHIHHH20IHHHIIHIHHHIHH")
_ELECTRICAL = struct.Struct(">HHHI")
assert FRAME_STRUCT.size == FRAME_LEN


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
    f = FRAME_STRUCT.unpack(frame)
    model = MODELS_BY_HEADER.get(f[0])
    if model is None:
        raise FrameError(f"unknown UM model marker 0x{f[0]:04X}")
    if f[-1] != END_MARKER:
        raise FrameError(f"bad UM end marker 0x{f[-1]:04X}")
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
    ``um25c`` still reads correctly. Bytes that are not part of a well-formed frame (garbage,
    short or corrupted frames) are skipped by searching for the next marker; each skipped run
    and each reply that times out counts one ``frame_errors``. After ``max_silent_reads``
    replies in a row with no data at all the link is declared lost (raises
    :class:`MeterDisconnected`) so that the sampler reopens it - an RFCOMM link to a meter that
    went out of range stays "open" but silent.
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
        self.timeouts = 0
        self.last_frame: UMFrame | None = None
        self._buf = bytearray()
        self._skipping = False
        self._resync = False
        self._silent = 0
        self._t = 0.0
        self._pending = False
        self._last_raw = b""
        self._keep_raw = False

    def _on_open(self) -> None:
        self._pending = False
        self._buf.clear()
        self._skipping = False
        self._resync = False
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
            if buf[FRAME_LEN - 2 : FRAME_LEN] != _END:
                self._skip(2)  # marker without a valid frame behind it
                continue
            header, raw_v, raw_a, raw_p = _ELECTRICAL.unpack_from(buf)
            model = MODELS_BY_HEADER[header]
            self.detected_model = model
            self._skipping = False
            if self._keep_raw:
                self._last_raw = bytes(buf[:FRAME_LEN])
            del buf[:FRAME_LEN]
            return PowerSample(
                self._t,
                raw_p / 1000,
                raw_v * model.volts_per_count,
                raw_a * model.amps_per_count,
                self.source,
            )
        return None

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
        if self._resync or buf:
            # Something unexpected happened before: drop whatever is queued so that the next
            # reply is the answer to this request, not a late answer to an earlier one.
            if buf:
                self._skip(len(buf))
                self._skipping = False
            self._port().reset_input_buffer()
            self._resync = False
        self._t = self._clock()
        self._write_fast(REQUEST)
        self._pending = True

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
                if buf:
                    self._resync = True  # trailing bytes after a frame: resync next time
                return sample
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
                    if buf:
                        self._resync = True  # trailing bytes after a frame: resync next time
                    return sample
                if len(chunk) >= need:
                    continue  # got what we asked for but no frame yet: keep reading
            # Timed out before a complete frame arrived.
            self.timeouts += 1
            self._resync = True
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
