"""Power-meter emulators that speak the real byte protocols on a pseudo-terminal.

Each emulator owns a pty pair (:func:`os.openpty`) and a symlink, :attr:`PtyEmulator.port`,
pointing at the slave side; the code under test opens that path with pyserial exactly as it
would open ``/dev/rfcomm0`` or ``/dev/ttyUSB0``. A thread answers requests on the master side.

Faults can be injected while running: garbage bytes, short or corrupted frames, and
:meth:`PtyEmulator.vanish`, which closes the pty and removes the symlink (the reader sees the
port disappear), then after a delay opens a *new* pty and points the same symlink at it, the
way a USB adapter re-enumerates or an RFCOMM link is re-bound.

* :class:`UMEmulator` - RuiDeng UM24C/UM25C/UM34C: answers each ``0xF0`` with a 130-byte frame.
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

from htfl.device.power.drivers.um import END_MARKER, FRAME_STRUCT, MODELS, REQUEST, UMModel

Waveform = Callable[[float], tuple[float, float]]


def clamp(value: float, bits: int) -> int:
    return max(0, min(int(round(value)), (1 << bits) - 1))


def encode_frame(
    model: UMModel | str,
    volts: float,
    amps: float,
    watts: float | None = None,
    *,
    temp_c: int = 25,
    group: int = 0,
    groups: tuple[tuple[float, float], ...] = (),
    dplus_volts: float = 0.0,
    dminus_volts: float = 0.0,
    charging_mode: int = 0,
    backlight: int = 3,
    screen_timeout_min: int = 0,
    screen: int = 0,
) -> bytes:
    """Build a frame the way a meter lays it out (used by the emulator and tests).

    ``watts`` defaults to ``volts * amps``. Values are rounded to the model's resolution and
    clamped to the field width.
    """
    m = MODELS[model] if isinstance(model, str) else model
    if watts is None:
        watts = volts * amps
    group_fields: list[int] = []
    for i in range(10):
        ah, wh = groups[i] if i < len(groups) else (0.0, 0.0)
        group_fields += [clamp(ah * 1000, 32), clamp(wh * 1000, 32)]
    resistance = volts / amps if amps > 0 else 9999.9
    return FRAME_STRUCT.pack(
        m.header,
        clamp(volts / m.volts_per_count, 16),
        clamp(amps / m.amps_per_count, 16),
        clamp(watts * 1000, 32),
        clamp(temp_c, 16),
        clamp(temp_c * 9 / 5 + 32, 16),
        group,
        *group_fields,
        clamp(dplus_volts * 100, 16),
        clamp(dminus_volts * 100, 16),
        charging_mode,
        0,
        0,
        10,
        0,
        0,
        screen_timeout_min,
        backlight,
        clamp(resistance * 10, 32),
        screen,
        END_MARKER,
    )


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
        self._out += data
        self._flush_out()

    def _flush_out(self) -> None:
        if not self._out or self._master < 0:
            return
        try:
            n = os.write(self._master, self._out)
        except BlockingIOError:
            return
        except OSError:
            self._out.clear()  # the pty is gone
            return
        del self._out[:n]

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
                ready, writable, _ = select.select(
                    [self._master, self._wake_r],
                    [self._master] if self._out else [],
                    [],
                    self._poll_timeout(),
                )
            except (OSError, ValueError):
                continue
            if writable:
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
    """Answers each ``0xF0`` request with a UM24C/UM25C/UM34C frame of the waveform's values.

    Fault injection (each applies to the next ``count`` replies):

    * :meth:`inject_garbage` - prefix the reply with junk bytes (no valid marker in them).
    * :meth:`inject_short_frame` - send only the first ``length`` bytes of a frame.
    * :meth:`inject_bad_end` - send a full-length frame with a corrupted end marker.
    * :meth:`inject_silence` - ignore the request.
    """

    GARBAGE = b"\x00\xffgarbage\x55\xaa\x01\x02\x03"

    def __init__(
        self,
        model: str = "um25c",
        waveform: Waveform | None = None,
        link_path: str | None = None,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(link_path)
        self.model = MODELS[model]
        self.waveform = waveform or constant()
        self.frames_sent = 0
        self._clock = clock
        self._faults: collections.deque[tuple[str, object]] = collections.deque()

    def inject_garbage(self, data: bytes | None = None, count: int = 1) -> None:
        for _ in range(count):
            self._faults.append(("garbage", data or self.GARBAGE))

    def inject_short_frame(self, length: int = 60, count: int = 1) -> None:
        for _ in range(count):
            self._faults.append(("short", length))

    def inject_bad_end(self, count: int = 1) -> None:
        for _ in range(count):
            self._faults.append(("bad_end", None))

    def inject_silence(self, count: int = 1) -> None:
        for _ in range(count):
            self._faults.append(("silence", None))

    def frame(self, t: float | None = None) -> bytes:
        volts, amps = self.waveform(self._clock() if t is None else t)
        return encode_frame(self.model, volts, amps)

    def _handle(self, data: bytes) -> None:
        for _ in range(data.count(REQUEST)):
            self.requests += 1
            frame = self.frame()
            fault = self._faults.popleft() if self._faults else None
            if fault is None:
                self._write(frame)
                self.frames_sent += 1
                continue
            kind, arg = fault
            if kind == "garbage":
                assert isinstance(arg, bytes)
                self._write(arg + frame)
                self.frames_sent += 1
            elif kind == "short":
                assert isinstance(arg, int)
                self._write(frame[:arg])
            elif kind == "bad_end":
                self._write(frame[:-2] + b"\x00\x00")
            # "silence": no reply at all


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
