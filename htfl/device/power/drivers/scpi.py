"""SCPI power analysers over a serial port (Yokogawa WT310 style).

On open the driver puts the instrument in remote mode, sets the update rate, selects ASCII
numeric output and the measured items, e.g. for a WT310 and element 1::

    :COMM:REM ON
    :RATE 100MS
    :NUM:FORM ASC
    :NUM:NORM:NUM 3
    :NUM:NORM:ITEM1 U,1;ITEM2 I,1;ITEM3 P,1

then every :meth:`ScpiMeter.read` sends ``:NUM:NORM:VAL?`` and parses the comma-separated reply
(``+2.3012E+02,+1.0040E-01,+2.3105E+01``). ``NAN``/``INF`` (no data yet, over-range) and replies
with the wrong number of values are frame errors. The command strings live in a
:class:`ScpiCommandSet` so that other instruments can be described without code changes.

The instrument refreshes its values once per update period (WT310: 100 ms at the fastest), so
polling faster than ``rate`` returns repeated values.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import serial

from htfl.device.power.meter import Clock, FrameError, MeterDisconnected, PowerSample
from htfl.device.power.serial_link import SerialMeter


@dataclass(frozen=True)
class ScpiCommandSet:
    """The command strings one instrument family understands.

    ``None`` for an optional command skips it. ``{rate}``, ``{count}``, ``{index}``,
    ``{function}`` and ``{element}`` are substituted.
    """

    name: str = "wt310"
    remote_on: str | None = ":COMM:REM ON"
    remote_off: str | None = ":COMM:REM OFF"
    rate: str | None = ":RATE {rate}"
    numeric_format: str | None = ":NUM:FORM ASC"
    item_count: str | None = ":NUM:NORM:NUM {count}"
    items_prefix: str = ":NUM:NORM:"
    item: str = "ITEM{index} {function},{element}"
    query: str = ":NUM:NORM:VAL?"
    identify: str | None = "*IDN?"
    #: Functions selected as items 1..n; ``U``/``I``/``P`` map to volts/amps/watts.
    functions: tuple[str, ...] = ("U", "I", "P")
    volts_function: str = "U"
    amps_function: str = "I"
    watts_function: str = "P"
    default_rate: str = "100MS"
    terminator: str = "\n"

    def setup_commands(self, element: int, rate: str | None = None) -> list[str]:
        """The commands sent on open, in order."""
        out: list[str] = []
        if self.remote_on:
            out.append(self.remote_on)
        if self.rate:
            out.append(self.rate.format(rate=rate or self.default_rate))
        if self.numeric_format:
            out.append(self.numeric_format)
        if self.item_count:
            out.append(self.item_count.format(count=len(self.functions)))
        items = [
            self.item.format(index=i, function=f, element=element)
            for i, f in enumerate(self.functions, start=1)
        ]
        out.append(self.items_prefix + ";".join(items))
        return out


WT310 = ScpiCommandSet()
#: Instruments known by name in the inventory (``instrument: wt310``).
INSTRUMENTS: dict[str, ScpiCommandSet] = {
    "wt310": WT310,
    "wt310e": WT310,
    "wt330": WT310,
}

_NO_DATA = 9.0e37  # Yokogawa and many SCPI instruments use 9.9E+37 for "no data"


def parse_values(line: str | bytes, count: int | None = None) -> list[float]:
    """Parse a comma-separated numeric reply; raises :class:`FrameError` if malformed.

    Rejects non-numbers, ``NAN``/``INF`` and the ``9.9E+37`` "no data" sentinel, and a reply
    with other than ``count`` values when ``count`` is given.
    """
    if isinstance(line, bytes | bytearray):
        try:
            line = line.decode("ascii")
        except UnicodeDecodeError as err:
            raise FrameError(f"non-ASCII SCPI reply {line!r}") from err
    text = line.strip()
    if not text:
        raise FrameError("empty SCPI reply")
    parts = text.split(",")
    if count is not None and len(parts) != count:
        raise FrameError(f"expected {count} values, got {len(parts)}: {text!r}")
    values: list[float] = []
    for part in parts:
        try:
            v = float(part)
        except ValueError as err:
            raise FrameError(f"not a number {part.strip()!r} in {text!r}") from err
        if not math.isfinite(v) or abs(v) >= _NO_DATA:
            raise FrameError(f"no data / over-range value {part.strip()!r}")
        values.append(v)
    return values


@dataclass
class _Indexes:
    volts: int | None = None
    amps: int | None = None
    watts: int | None = None


class ScpiMeter(SerialMeter):
    """Polls a SCPI power analyser with one value query per sample."""

    driver = "scpi"

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        element: int = 1,
        commands: ScpiCommandSet | str = WT310,
        rate: str | None = None,
        timeout: float = 1.0,
        max_silent_reads: int = 5,
        device: str = "",
        source: str | None = None,
        clock: Clock = time.time,
    ):
        if isinstance(commands, str):
            try:
                commands = INSTRUMENTS[commands.lower()]
            except KeyError:
                raise ValueError(
                    f"unknown SCPI instrument {commands!r}; expected one of {sorted(INSTRUMENTS)}"
                ) from None
        super().__init__(
            port,
            baudrate=baudrate,
            timeout=timeout,
            device=device,
            source=source or commands.name,
            clock=clock,
        )
        self.commands = commands
        self.element = int(element)
        self.rate = rate
        self.max_silent_reads = max_silent_reads
        self.identity: str | None = None
        self.timeouts = 0
        fn = [f.upper() for f in commands.functions]
        self._idx = _Indexes(
            volts=fn.index(commands.volts_function) if commands.volts_function in fn else None,
            amps=fn.index(commands.amps_function) if commands.amps_function in fn else None,
            watts=fn.index(commands.watts_function) if commands.watts_function in fn else None,
        )
        if self._idx.watts is None and (self._idx.volts is None or self._idx.amps is None):
            raise ValueError("SCPI items must include power, or both voltage and current")
        self._nvalues = len(fn)
        self._term = commands.terminator.encode("ascii")
        self._query = commands.query.encode("ascii") + self._term
        self._rx = bytearray()
        self._resync = False
        self._silent = 0
        self._pending = False
        self._t = 0.0

    # -- line I/O ---------------------------------------------------------------------------
    def _send(self, command: str) -> None:
        self._port().write(command.encode("ascii") + self._term)

    def _readline(self) -> bytes | None:
        """One reply line without terminator, or ``None`` on timeout (partial data kept)."""
        ser = self._port()
        rx = self._rx
        deadline = time.monotonic() + self.timeout
        while True:
            nl = rx.find(b"\n")
            if nl >= 0:
                line = bytes(rx[:nl]).rstrip(b"\r")
                del rx[: nl + 1]
                return line
            waiting = ser.in_waiting
            chunk = ser.read(waiting if waiting > 0 else 1)
            if chunk:
                rx += chunk
                if len(rx) > 65536:
                    rx.clear()  # a runaway stream without terminators
                continue
            if time.monotonic() >= deadline:
                return None

    def query(self, command: str) -> str | None:
        """Send a query and return its reply line (``None`` on timeout)."""
        self._send(command)
        line = self._readline()
        return None if line is None else line.decode("ascii", "replace")

    def _on_open(self) -> None:
        self._pending = False
        self._rx.clear()
        self._resync = False
        self._silent = 0
        for command in self.commands.setup_commands(self.element, self.rate):
            self._send(command)
        if self.commands.identify:
            self.identity = self.query(self.commands.identify)
            if self.identity is None:
                raise MeterDisconnected(f"{self.port}: no reply to {self.commands.identify}")

    def _on_close(self, ser: serial.SerialBase) -> None:
        if self.commands.remote_off:
            try:
                ser.write(self.commands.remote_off.encode("ascii") + self._term)
                ser.flush()
            except Exception:
                pass

    # -- sampling ---------------------------------------------------------------------------
    supports_split = True

    def request(self) -> None:
        """Send the value query; the sample is timestamped now."""
        ser = self._port()
        if self._resync:
            self._rx.clear()
            ser.reset_input_buffer()
            self._resync = False
        self._t = self._clock()
        self._write_fast(self._query)
        self._pending = True

    def collect(self) -> PowerSample:
        """Parse the reply to the last :meth:`request` (waits up to ``timeout`` for it)."""
        if not self._pending:
            self.request()
        self._pending = False
        rx = self._rx
        nl = rx.find(b"\n")
        if nl < 0:
            chunk = self._read_available()
            if chunk:
                rx += chunk
                nl = rx.find(b"\n")
        if nl >= 0:
            line: bytes | None = bytes(rx[:nl]).rstrip(b"\r")
            del rx[: nl + 1]
        else:
            line = self._readline()
        return self._parse_reply(line)

    def read(self) -> PowerSample:
        self.request()
        self._pending = False
        return self._parse_reply(self._readline())

    def _parse_reply(self, line: bytes | None) -> PowerSample:
        if line is None:
            self.timeouts += 1
            self.frame_errors += 1
            self._resync = True
            if self._rx:
                self._silent = 0
                raise FrameError(f"{self.port}: incomplete SCPI reply {bytes(self._rx)!r}")
            self._silent += 1
            if self._silent >= self.max_silent_reads:
                self._silent = 0
                raise MeterDisconnected(
                    f"{self.port}: no reply to {self.max_silent_reads} queries in a row"
                )
            raise FrameError(f"{self.port}: no reply within {self.timeout} s")
        self._silent = 0
        try:
            values = parse_values(line, self._nvalues)
        except FrameError:
            self.frame_errors += 1
            self._resync = True
            raise
        idx = self._idx
        volts = values[idx.volts] if idx.volts is not None else None
        amps = values[idx.amps] if idx.amps is not None else None
        if idx.watts is not None:
            watts = values[idx.watts]
        else:
            assert volts is not None and amps is not None
            watts = volts * amps
        return PowerSample(self._t, watts, volts, amps, self.source)
