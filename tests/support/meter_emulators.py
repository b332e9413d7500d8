"""Power-meter emulators that speak the real byte protocols on a pseudo-terminal.

Each emulator owns a pty pair (:func:`os.openpty`) and a symlink, :attr:`PtyEmulator.port`,
pointing at the slave side; the code under test opens that path with pyserial exactly as it
would open ``/dev/rfcomm0`` or ``/dev/ttyUSB0``. A thread answers requests on the master side.

Faults can be injected while running: garbage bytes, short or corrupted frames, and
:meth:`PtyEmulator.vanish`, which closes the pty and removes the symlink (the reader sees the
port disappear), then after a delay opens a *new* pty and points the same symlink at it, the
way a USB adapter re-enumerates or an RFCOMM link is re-bound.

* :class:`UMEmulator` - RuiDeng UM24C/UM25C/UM34C: answers each ``0xF0`` with a 130-byte frame
  built from this module's own layout table (:data:`UM_LAYOUT`, sources cited there), paced at
  the meter's baud rate.
* :class:`ScpiEmulator` - a Yokogawa WT310-style analyser: line-based SCPI commands.

Waveforms are functions of wall-clock time ``time.time()`` returning ``(volts, amps)``, so a
test or benchmark can compute the exact energy the emulated device drew.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import select
import tempfile
import threading
import time
import tty
from collections.abc import Callable

Waveform = Callable[[float], tuple[float, float]]


def clamp(value: float, bits: int) -> int:
    return max(0, min(int(round(value)), (1 << bits) - 1))


# --- RuiDeng UM24C / UM25C / UM34C, written from the public protocol descriptions -----------
#
# Sources (each row below names the ones it rests on):
#   [W] sigrok wiki, "RDTech UM series", section "Protocol" (offsets, widths, units; model ids;
#       "the device won't auto-send any data": one 130-byte dump per 0xF0 byte; 9600 baud);
#   [S] libsigrok, src/hardware/rdtech-um/protocol.c (per-model scales of V and I, the UM34C
#       checksum: byte 129 = XOR of a fixed list of byte positions; UM24C/UM25C end 0xFFF1);
#   [H] sebastianha/um34c, README "Data" (a real UM34C's decoded dump: field order and units,
#       D+/D- in 10 mV, threshold in 10 mA, resistance in 0.1 ohm, last field varying).
# This table is the emulator's own: it does not import the driver under test.

#: model -> (id at offset 0 [W][S], volts per count [S], amps per count [S], how it ends [S])
UM_MODELS: dict[str, tuple[int, float, float, str]] = {
    "um24c": (0x0963, 0.01, 0.001, "fff1"),
    "um25c": (0x09C9, 0.001, 0.0001, "fff1"),
    "um34c": (0x0D4C, 0.01, 0.001, "xor"),
}
#: (field, offset, bytes, units per count) - big-endian unsigned [W][H]; None: model-dependent
UM_LAYOUT: tuple[tuple[str, int, int, float | None], ...] = (
    ("volts", 2, 2, None),  # [W][S]
    ("amps", 4, 2, None),  # [W][S]
    ("watts", 6, 4, 0.001),  # mW [W][H]
    ("temp_c", 10, 2, 1),  # [W][S][H]
    ("temp_f", 12, 2, 1),  # [W][H]
    ("group", 14, 2, 1),  # [W][H]
    # 16..95: ten (mAh u32, mWh u32) data groups [W][H], filled by encode_um_frame
    ("dplus_volts", 96, 2, 0.01),  # [W][S][H]
    ("dminus_volts", 98, 2, 0.01),  # [W][S][H]
    ("charging_mode", 100, 2, 1),  # [W][H]
    ("record_ah", 102, 4, 0.001),  # [W][H]
    ("record_wh", 106, 4, 0.001),  # [W][S][H]
    ("record_threshold_amps", 110, 2, 0.01),  # [W][H]
    ("record_seconds", 112, 4, 1),  # [W][H]
    ("recording", 116, 2, 1),  # [W][H]
    ("screen_timeout_min", 118, 2, 1),  # [W][H]
    ("backlight", 120, 2, 1),  # [W][H]
    ("resistance_ohms", 122, 4, 0.1),  # [W][H]
    ("screen", 126, 2, 1),  # [W][H]
)
#: The byte positions whose XOR a UM34C sends in byte 129 [S].
UM34C_XOR_POSITIONS = (
    1, 3, 7, 9, 15, 17, 19, 23, 31, 39, 41, 45, 49, 53, 55, 57,
    59, 63, 67, 69, 73, 79, 83, 89, 97, 99, 109, 111, 113, 119, 121, 127,
)  # fmt: skip
UM_FRAME_BYTES = 130
UM_REQUEST = 0xF0


def um34c_xor(frame: bytes | bytearray) -> int:
    x = 0
    for i in UM34C_XOR_POSITIONS:
        x ^= frame[i]
    return x


def encode_um_frame(
    model: str,
    volts: float,
    amps: float,
    watts: float | None = None,
    *,
    byte128: int = 0x68,
    groups: tuple[tuple[float, float], ...] = (),
    **fields: float,
) -> bytes:
    """One frame as the meter sends it, from :data:`UM_LAYOUT` (not from the driver).

    ``watts`` defaults to ``volts * amps`` (the meter reports the power it measured, which
    agrees with its volts and amps fields within their resolution). Other fields by name, in
    the layout's units (``temp_c=25``, ``dplus_volts=0.6``); ``temp_f`` follows ``temp_c``.
    ``byte128`` is the UM34C's varying byte before its checksum.
    """
    ident, v_unit, a_unit, ending = UM_MODELS[model]
    values: dict[str, float] = {
        "volts": volts,
        "amps": amps,
        "watts": volts * amps if watts is None else watts,
        "temp_c": 25,
        "backlight": 3,
        "record_threshold_amps": 0.1,
        "resistance_ohms": volts / amps if amps > 0 else 9999.9,
    }
    values.update(fields)
    values.setdefault("temp_f", values["temp_c"] * 9 / 5 + 32)
    frame = bytearray(UM_FRAME_BYTES)
    frame[0:2] = ident.to_bytes(2, "big")
    for name, offset, width, unit in UM_LAYOUT:
        if unit is None:
            unit = v_unit if name == "volts" else a_unit
        raw = clamp(values.get(name, 0) / unit, 8 * width)
        frame[offset : offset + width] = raw.to_bytes(width, "big")
    for i, (ah, wh) in enumerate(groups[:10]):
        frame[16 + 8 * i : 20 + 8 * i] = clamp(ah * 1000, 32).to_bytes(4, "big")
        frame[20 + 8 * i : 24 + 8 * i] = clamp(wh * 1000, 32).to_bytes(4, "big")
    if ending == "xor":
        frame[128] = byte128 & 0xFF
        frame[129] = um34c_xor(frame)
    else:
        frame[128:130] = b"\xff\xf1"
    return bytes(frame)


def constant(volts: float = 5.0, amps: float = 0.5) -> Waveform:
    """A waveform that always returns ``(volts, amps)``."""
    return lambda t: (volts, amps)


def square_wave(
    idle_watts: float,
    busy_watts: float,
    period: float,
    duty: float = 0.5,
    volts: float = 5.0,
    t0: float = 0.0,
) -> Waveform:
    """Busy for the first ``duty`` fraction of every ``period`` (phase origin ``t0``)."""

    def wave(t: float) -> tuple[float, float]:
        phase = ((t - t0) / period) % 1.0
        watts = busy_watts if phase < duty else idle_watts
        return volts, watts / volts

    return wave


def square_wave_energy(
    idle_watts: float,
    busy_watts: float,
    period: float,
    start: float,
    end: float,
    duty: float = 0.5,
    t0: float = 0.0,
) -> float:
    """Exact energy in joules of :func:`square_wave` over ``[start, end]``."""

    def busy_time_until(t: float) -> float:
        cycles = math.floor((t - t0) / period)
        within = (t - t0) - cycles * period
        return cycles * duty * period + min(within, duty * period)

    busy = busy_time_until(end) - busy_time_until(start)
    total = end - start
    return busy * busy_watts + (total - busy) * idle_watts


class PtyEmulator:
    """Base class: a pty, a stable symlink to its slave side, and a serving thread."""

    def __init__(self, link_path: str | None = None):
        if link_path is None:
            self._tmpdir: str | None = tempfile.mkdtemp(prefix="htfl-meter-")
            link_path = os.path.join(self._tmpdir, "meter")
        else:
            self._tmpdir = None
        self.port = link_path
        self.slave_path: str | None = None
        self.vanish_count = 0
        self.requests = 0
        self._master = -1
        self._slave = -1
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._online = threading.Event()
        self._vanish_for: float | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._out = bytearray()
        self.max_backlog = 1 << 20
        self.overflow_bytes = 0
        #: Bytes per second on the emulated line (``baud / 10`` for 8N1), or None: as fast as
        #: the pty takes them. A paced emulator releases each byte when it has been "sent".
        self.byte_rate: float | None = None
        self._tx_base = 0.0
        self._tx_sent = 0
        self._scheduled: list[tuple[float, bytes]] = []  # (monotonic due time, bytes)

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> PtyEmulator:
        self._open_pty()
        self._thread = threading.Thread(
            target=self._serve, name=f"{type(self).__name__}:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close_pty()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1
        if self._tmpdir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self._tmpdir)

    def __enter__(self) -> PtyEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def online(self) -> bool:
        return self._online.is_set()

    def wait_online(self, timeout: float = 5.0) -> bool:
        return self._online.wait(timeout)

    def vanish(self, duration: float) -> None:
        """Close the pty and remove the port symlink now; reappear (new pty) after ``duration``."""
        with self._lock:
            self._vanish_for = duration
        os.write(self._wake_w, b"v")

    # -- pty handling -----------------------------------------------------------------------
    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation, no XON/XOFF, 8 bits
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.slave_path = os.ttyname(slave)
        tmp = f"{self.port}.tmp{os.getpid()}"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(self.slave_path, tmp)
        os.replace(tmp, self.port)  # atomic: readers never see a half-made link
        self._online.set()

    def _close_pty(self) -> None:
        self._online.clear()
        self._out.clear()
        self._scheduled.clear()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.port)
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1

    def _write(self, data: bytes) -> None:
        """Queue output; it is written to the master as the pty accepts it.

        Like a device's transmit FIFO, the queue is bounded (``max_backlog`` bytes): past that,
        new output is dropped and counted in :attr:`overflow_bytes`.
        """
        if len(self._out) + len(data) > self.max_backlog:
            self.overflow_bytes += len(data)
            return
        if not self._out and self.byte_rate:
            # The line was idle: this output starts now (or when the last byte finished).
            now = time.monotonic()
            self._tx_base = max(now, self._tx_base + self._tx_sent / self.byte_rate)
            self._tx_sent = 0
        self._out += data
        self._flush_out()

    def _write_later(self, delay: float, data: bytes) -> None:
        """Queue ``data`` for output ``delay`` seconds from now (a late or unsolicited reply)."""
        self._scheduled.append((time.monotonic() + delay, data))
        self._scheduled.sort(key=lambda item: item[0])

    def _release_scheduled(self) -> None:
        now = time.monotonic()
        while self._scheduled and self._scheduled[0][0] <= now:
            self._write(self._scheduled.pop(0)[1])

    def _flush_out(self) -> None:
        if not self._out or self._master < 0:
            return
        out: bytes | bytearray = self._out
        if self.byte_rate:
            due = int((time.monotonic() - self._tx_base) * self.byte_rate) - self._tx_sent
            if due <= 0:
                return
            out = self._out[:due]
        try:
            n = os.write(self._master, out)
        except BlockingIOError:
            return
        except OSError:
            self._out.clear()  # the pty is gone
            return
        del self._out[:n]
        self._tx_sent += n

    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                vanish_for, self._vanish_for = self._vanish_for, None
            if vanish_for is not None:
                self._close_pty()
                self.vanish_count += 1
                self._on_vanish()
                if self._stop.wait(vanish_for):
                    return
                self._open_pty()
                continue
            try:
                paced = self.byte_rate is not None
                busy = bool(self._out or self._scheduled)
                ready, writable, _ = select.select(
                    [self._master, self._wake_r],
                    [self._master] if self._out and not paced else [],
                    [],
                    0.002 if busy and paced or self._scheduled else self._poll_timeout(),
                )
            except (OSError, ValueError):
                continue
            self._release_scheduled()
            if writable or self.byte_rate is not None:
                self._flush_out()
            self._tick()
            if self._wake_r in ready:
                os.read(self._wake_r, 64)
            if self._master in ready:
                try:
                    data = os.read(self._master, 4096)
                except BlockingIOError:
                    continue
                except OSError:
                    continue  # EIO: no reader has the slave open right now
                if data:
                    self._handle(data)

    # -- protocol ---------------------------------------------------------------------------
    def _handle(self, data: bytes) -> None:
        raise NotImplementedError

    def _poll_timeout(self) -> float:
        """How long the serving thread may block waiting for input."""
        return 0.5

    def _tick(self) -> None:
        """Hook called on every turn of the serving loop (for emulators that push data)."""

    def _on_vanish(self) -> None:
        """Hook: forget per-connection state."""


class UMEmulator(PtyEmulator):
    """A UM24C/UM25C/UM34C: answers each ``0xF0`` with a 130-byte frame of the waveform's values.

    Frames come from :func:`encode_um_frame` (this module's own layout table, written from the
    public protocol descriptions - not the driver's encoder). Output is paced at ``baud`` (8N1:
    a frame takes ~135 ms at 9600) unless ``baud=None``. The values are latched when the request
    arrives. The UM34C's byte 128 changes from frame to frame, as a real one's does.

    Faults, each for the next ``count`` requests unless said otherwise:

    * :meth:`inject_garbage` - junk bytes (no valid marker) before the reply;
    * :meth:`inject_short_frame` - only the first ``length`` bytes of the reply;
    * :meth:`inject_bad_end` / :meth:`inject_bad_frame` - a complete reply with a wrong end
      marker (UM24C/UM25C) or checksum (UM34C);
    * :meth:`inject_corrupt_byte` - one data byte flipped, marker/checksum left as sent (a
      bit error on the air that a checksum-less frame cannot reveal by itself);
    * :meth:`inject_silence` - no reply at all;
    * :meth:`inject_late` - the reply ``delay`` seconds late;
    * :meth:`inject_split` - the reply in two parts with a pause between (RFCOMM packets);
    * :meth:`silence_for` - no reply to any request for the next ``seconds`` (a meter still
      booting, or out of Bluetooth range at the start);
    * :meth:`send_unsolicited` - bytes pushed with no request, ``after`` seconds from now.
    """

    GARBAGE = b"\x00\xffgarbage\x55\xaa\x01\x02\x03"

    def __init__(
        self,
        model: str = "um25c",
        waveform: Waveform | None = None,
        link_path: str | None = None,
        clock: Callable[[], float] = time.time,
        baud: int | None = 9600,
    ):
        super().__init__(link_path)
        if model not in UM_MODELS:
            raise ValueError(f"unknown UM model {model!r}")
        self.model = model
        self.waveform = waveform or constant()
        self.byte_rate = baud / 10 if baud else None
        self.frames_sent = 0
        self.unsolicited_sent = 0
        self.faults_served: collections.Counter[str] = collections.Counter()
        self._clock = clock
        self._faults: collections.deque[tuple[str, object]] = collections.deque()
        self._silent_until = 0.0
        self._silence: tuple[int, float] | None = None

    def _add(self, kind: str, arg: object, count: int) -> None:
        for _ in range(count):
            self._faults.append((kind, arg))

    def inject_garbage(self, data: bytes | None = None, count: int = 1) -> None:
        self._add("garbage", data or self.GARBAGE, count)

    def inject_short_frame(self, length: int = 60, count: int = 1) -> None:
        self._add("short", length, count)

    def inject_bad_end(self, count: int = 1) -> None:
        self._add("bad_end", None, count)

    inject_bad_frame = inject_bad_end

    def inject_corrupt_byte(self, offset: int = 2, xor: int = 0x10, count: int = 1) -> None:
        self._add("corrupt", (offset, xor), count)

    def inject_silence(self, count: int = 1) -> None:
        self._add("silence", None, count)

    def inject_late(self, delay: float, count: int = 1) -> None:
        self._add("late", delay, count)

    def inject_split(self, at: int = 64, pause: float = 0.05, count: int = 1) -> None:
        self._add("split", (at, pause), count)

    def silence_for(self, seconds: float, after: int = 0) -> None:
        """Answer no request for ``seconds``, starting once ``after`` more requests were served."""
        self._silence = (self.requests + after, seconds)

    def send_unsolicited(self, data: bytes | None = None, after: float = 0.0) -> None:
        self._write_later(after, data or self.GARBAGE)
        self.unsolicited_sent += 1
        os.write(self._wake_w, b"u")

    def frame(self, t: float | None = None) -> bytes:
        volts, amps = self.waveform(self._clock() if t is None else t)
        return encode_um_frame(self.model, volts, amps, byte128=0x60 + self.frames_sent % 16)

    def _handle(self, data: bytes) -> None:
        for _ in range(data.count(UM_REQUEST)):
            self.requests += 1
            if self._silence is not None and self.requests > self._silence[0]:
                self._silent_until = time.monotonic() + self._silence[1]
                self._silence = None
            if time.monotonic() < self._silent_until:
                self.faults_served["silent_start"] += 1
                continue
            frame = self.frame()
            kind, arg = self._faults.popleft() if self._faults else ("", None)
            if kind:
                self.faults_served[kind] += 1
            if kind == "silence":
                continue
            if kind == "short":
                assert isinstance(arg, int)
                self._write(frame[:arg])
                continue
            if kind == "bad_end":
                frame = frame[:-2] + bytes([frame[-2], frame[-1] ^ 0x5A])
            elif kind == "corrupt":
                offset, xor = arg  # type: ignore[misc]
                frame = frame[:offset] + bytes([frame[offset] ^ xor]) + frame[offset + 1 :]
            self.frames_sent += 1
            if kind == "garbage":
                assert isinstance(arg, bytes)
                self._write(arg + frame)
            elif kind == "late":
                assert isinstance(arg, float | int)
                self._write_later(float(arg), frame)
            elif kind == "split":
                at, pause = arg  # type: ignore[misc]
                self._write(frame[:at])
                self._write_later(pause, frame[at:])
            else:
                self._write(frame)


class ScpiEmulator(PtyEmulator):
    """A Yokogawa WT310-style power analyser speaking SCPI over RS-232.

    Understands ``*IDN?``, ``*RST``, ``:COMMunicate:REMote ON|OFF``, ``:RATE <t>``,
    ``:NUMeric:FORMat ASCii``, ``:NUMeric:NORMal:NUMber <n>``, ``:NUMeric:NORMal:ITEM<k>
    <function>,<element>`` and ``:NUMeric:NORMal:VALue?`` in short or long form, and compound
    commands joined with ``;`` (a following command without a leading colon is relative to the
    previous one's parent node). Every received command is recorded in :attr:`commands`.
    ``:VAL?`` answers with the values of the items in ``+1.2345E+00`` notation, ``NAN`` for
    functions it does not model. Replies end with ``terminator``.
    """

    _NODES = {
        "COMM": "COMMUNICATE",
        "REM": "REMOTE",
        "NUM": ("NUMERIC", "NUMBER"),
        "NORM": "NORMAL",
        "FORM": "FORMAT",
        "VAL": "VALUE",
        "RATE": "RATE",
        "ITEM": "ITEM",
        "STAT": "STATUS",
        "ERR": "ERROR",
    }

    def __init__(
        self,
        waveform: Waveform | None = None,
        link_path: str | None = None,
        terminator: str = "\r\n",
        identity: str = "YOKOGAWA,WT310,EMU00001,F1.00",
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(link_path)
        self.waveform = waveform or constant(230.0, 0.1)
        self.terminator = terminator
        self.identity = identity
        self.commands: list[str] = []
        self.remote = False
        self.rate = "250MS"
        self.numeric_format = "ASC"
        self.item_count = 15
        self.items: dict[int, tuple[str, int]] = {1: ("U", 1), 2: ("I", 1), 3: ("P", 1)}
        self.queries_answered = 0
        self._clock = clock
        self._rx = bytearray()
        self._faults: collections.deque[str] = collections.deque()

    def inject_garbage_line(self, count: int = 1) -> None:
        """Answer the next ``count`` value queries with a line that is not numeric."""
        self._faults.extend(["garbage"] * count)

    def inject_nan(self, count: int = 1) -> None:
        """Answer the next ``count`` value queries with ``NAN`` for every item (no data)."""
        self._faults.extend(["nan"] * count)

    def inject_short_line(self, count: int = 1) -> None:
        """Answer the next ``count`` value queries with fewer values than items."""
        self._faults.extend(["short"] * count)

    def _on_vanish(self) -> None:
        self._rx.clear()
        self.remote = False

    @classmethod
    def _short(cls, token: str) -> str:
        """Map one header node (long or short form, any case, optional suffix) to short form."""
        up = token.upper()
        query = "?" if up.endswith("?") else ""
        up = up.rstrip("?")
        digits = ""
        while up and up[-1].isdigit():
            digits = up[-1] + digits
            up = up[:-1]
        for short, long in cls._NODES.items():
            longs = long if isinstance(long, tuple) else (long,)
            if up == short or up in longs:
                return short + digits + query
        return up + digits + query

    def _handle(self, data: bytes) -> None:
        self._rx += data
        while True:
            nl = self._rx.find(b"\n")
            if nl < 0:
                if len(self._rx) > 4096:
                    self._rx.clear()
                return
            line = self._rx[:nl].decode("ascii", "replace").strip()
            del self._rx[: nl + 1]
            if line:
                self._handle_line(line)

    def _handle_line(self, line: str) -> None:
        parent: list[str] = []
        for part in line.split(";"):
            part = part.strip()
            if not part:
                continue
            header, _, arg = part.partition(" ")
            if header.startswith("*"):
                path = [header.upper()]
            else:
                nodes = [self._short(n) for n in header.strip(":").split(":")]
                path = nodes if header.startswith(":") or not parent else parent + nodes
                parent = path[:-1]
            command = ":".join(path)
            self.commands.append(f"{command} {arg.strip()}".strip())
            self._execute(command, arg.strip())

    def _execute(self, command: str, arg: str) -> None:
        if command == "*IDN?":
            self._reply(self.identity)
        elif command == "*RST":
            self.items = {1: ("U", 1), 2: ("I", 1), 3: ("P", 1)}
            self.item_count = 15
        elif command == "COMM:REM":
            self.remote = arg.upper() in ("ON", "1")
        elif command == "COMM:REM?":
            self._reply("1" if self.remote else "0")
        elif command == "RATE":
            self.rate = arg.upper()
        elif command == "NUM:FORM":
            self.numeric_format = arg.upper()[:3]
        elif command == "NUM:NORM:NUM":
            self.item_count = int(arg)
        elif command.startswith("NUM:NORM:ITEM") and not command.endswith("?"):
            index = int(command[len("NUM:NORM:ITEM") :])
            function, _, element = arg.partition(",")
            self.items[index] = (function.strip().upper(), int(element or 1))
        elif command == "NUM:NORM:VAL?":
            self._answer_values()

    def _answer_values(self) -> None:
        self.requests += 1
        fault = self._faults.popleft() if self._faults else None
        if fault == "garbage":
            self._reply("#\x07?? not a number")
            return
        values = []
        volts, amps = self.waveform(self._clock())
        for index in range(1, self.item_count + 1):
            function, _ = self.items.get(index, ("NONE", 1))
            if fault == "nan":
                values.append("NAN")
                continue
            value = {
                "U": volts,
                "I": amps,
                "P": volts * amps,
                "S": volts * amps,
                "Q": 0.0,
                "LAMB": 1.0,
            }.get(function)
            values.append("NAN" if value is None else f"{value:+.4E}")
        if fault == "short":
            values = values[:-1]
        self._reply(",".join(values))
        self.queries_answered += 1

    def _reply(self, text: str) -> None:
        self._write((text + self.terminator).encode("ascii"))


class StreamEmulator(PtyEmulator):
    """A continuous-output meter: pushes ``t_us,volts,amps`` lines at ``rate_hz``.

    (``volts,amps`` only with ``with_time=False``.)

    Like a USB CDC logger, lines are written in bursts every ``chunk_period`` seconds; ``t_us``
    is the device's sample clock (microseconds since streaming started). With
    ``start_command`` set, streaming begins when that line is received and stops on
    ``stop_command``; otherwise it streams from the start. :attr:`lines_sent` counts lines.
    """

    def __init__(
        self,
        waveform: Waveform | None = None,
        link_path: str | None = None,
        rate_hz: float = 1000.0,
        chunk_period: float = 0.01,
        start_command: str | None = None,
        stop_command: str | None = None,
        with_time: bool = True,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(link_path)
        self.waveform = waveform or constant()
        self.with_time = with_time
        self.rate_hz = rate_hz
        self.chunk_period = chunk_period
        self.start_command = start_command
        self.stop_command = stop_command
        self.lines_sent = 0
        self.streaming = start_command is None
        self._clock = clock
        self._t0 = clock()
        self._k = 0
        self._rx = bytearray()
        self._garbage = 0
        self._skip = 0
        self._resume = False

    def inject_garbage_line(self, count: int = 1) -> None:
        """Follow the next ``count`` sample lines with a line that does not parse."""
        self._garbage += count

    def inject_skip(self, count: int) -> None:
        """Drop the next ``count`` samples (their device timestamps are skipped too)."""
        self._skip += count

    def _start(self) -> None:
        self.streaming = True
        self._t0 = self._clock()
        self._k = 0

    def _handle(self, data: bytes) -> None:
        self._rx += data
        while (nl := self._rx.find(b"\n")) >= 0:
            line = self._rx[:nl].decode("ascii", "replace").strip()
            del self._rx[: nl + 1]
            if self.start_command and line == self.start_command:
                self._start()
            elif self.stop_command and line == self.stop_command:
                self.streaming = False

    def _poll_timeout(self) -> float:
        return self.chunk_period if self.streaming else 0.5

    def _tick(self) -> None:
        if not self.streaming or self._master < 0:
            return
        now = self._clock()
        due = int((now - self._t0) * self.rate_hz)
        if self._resume:
            self._k = due  # samples taken while the port was gone are lost, as on a device
            self._resume = False
        if due <= self._k:
            return
        lines = []
        sent = 0
        for k in range(self._k, due):
            if self._skip:
                self._skip -= 1  # the device overran: this sample never leaves it
                continue
            t = self._t0 + k / self.rate_hz
            volts, amps = self.waveform(t)
            if self.with_time:
                lines.append(f"{round(k * 1e6 / self.rate_hz)},{volts:.6f},{amps:.6f}\n")
            else:
                lines.append(f"{volts:.6f},{amps:.6f}\n")
            sent += 1
            if self._garbage:
                self._garbage -= 1
                lines.append("\x00#garbage,,\n")
        self._k = due
        self._write("".join(lines).encode("ascii"))
        self.lines_sent += sent

    def _on_vanish(self) -> None:
        self._rx.clear()
        self._resume = True
        if self.start_command:
            self.streaming = False
