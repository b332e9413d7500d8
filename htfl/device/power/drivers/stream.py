"""Continuous-output meters: the instrument pushes one CSV line per sample, no requests.

This is how high-rate sources reach 1 kS/s and beyond over a serial link: instruments in a
continuous/streaming output mode, or a microcontroller logger (INA219/INA226/INA228 + USB CDC)
printing ``t_us,volts,amps`` lines. Request/response meters cannot: every sample then costs a
round trip and a wake-up of the reader (see ``benchmarks/power.py``).

Line format is configured with ``columns``, e.g. ``("t", "volts", "amps")``: ``t`` is the
device's sample time (in units of ``time_scale`` seconds, e.g. 1e-6 for a microsecond
counter), ``volts``/``amps``/``watts`` are SI values, ``_`` ignores a column. Power is ``watts``
if present, else ``volts * amps``.

Timestamps: with a ``t`` column the device's sample clock is mapped to this host's wall clock
with an offset estimated as the minimum of ``arrival time - device time`` over the last
``offset_window`` seconds (the least-delayed lines give the best estimate; it follows slow
drift and re-anchors if the device counter jumps backwards, e.g. after a device reset).
Corrections are slewed at 1% at most, so timestamps stay monotonic and spacing within 1%.
Without a ``t`` column, lines that arrive together are spread backwards from the arrival time
at the nominal ``rate_hz``.

The reader sleeps ``batch_wait`` seconds before reading whatever has accumulated, so a 1 kS/s
stream costs ~100 wake-ups per second instead of 1,000. Lines that do not parse are frame
errors and are skipped; the stream resynchronises on the next newline.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Sequence

import serial

from htfl.device.power.meter import Clock, FrameError, MeterDisconnected, PowerSample
from htfl.device.power.serial_link import SerialMeter

_KNOWN_COLUMNS = frozenset({"t", "volts", "amps", "watts", "_"})
_MAX_LINE = 4096
MAX_SLEW = 0.01  # seconds of offset correction per second of device time


class StreamMeter(SerialMeter):
    """Reads a continuous stream of CSV sample lines from a serial port."""

    driver = "stream"

    def __init__(
        self,
        port: str,
        *,
        columns: Sequence[str] = ("t", "volts", "amps"),
        baudrate: int = 115200,
        time_scale: float = 1e-6,
        rate_hz: float | None = None,
        start_command: str | None = None,
        stop_command: str | None = None,
        batch_wait: float = 0.01,
        offset_window: float = 10.0,
        timeout: float = 1.0,
        max_silent_reads: int = 3,
        device: str = "",
        source: str | None = None,
        clock: Clock = time.time,
    ):
        super().__init__(
            port, baudrate=baudrate, timeout=timeout, device=device, source=source, clock=clock
        )
        cols = tuple(c.strip().lower() for c in columns)
        unknown = [c for c in cols if c not in _KNOWN_COLUMNS]
        if unknown:
            raise ValueError(f"unknown stream column(s) {unknown}; use {sorted(_KNOWN_COLUMNS)}")
        if "watts" not in cols and not ("volts" in cols and "amps" in cols):
            raise ValueError("stream columns must include watts, or volts and amps")
        if "t" not in cols and not rate_hz:
            raise ValueError("a stream without a 't' column needs rate_hz")
        self.columns = cols
        self._ncols = len(cols)
        self._it = cols.index("t") if "t" in cols else None
        self._iv = cols.index("volts") if "volts" in cols else None
        self._ia = cols.index("amps") if "amps" in cols else None
        self._iw = cols.index("watts") if "watts" in cols else None
        self.time_scale = float(time_scale)
        self.rate_hz = rate_hz
        self.start_command = start_command
        self.stop_command = stop_command
        self.batch_wait = float(batch_wait)
        self.offset_window = float(offset_window)
        self.max_silent_reads = max_silent_reads
        self.timeouts = 0
        self.resets = 0
        self.missed_samples = 0  # gaps in the device's sample clock (needs rate_hz)
        self.discontinuities = 0  # device clock jumps that are not countable gaps
        self.last_device_time: float | None = None
        self._ready: collections.deque[PowerSample] = collections.deque()
        self._rx = bytearray()
        self._offsets: collections.deque[tuple[float, float]] = collections.deque()
        self._applied: float | None = None
        self._applied_at = 0.0
        self._silent = 0

    def _on_open(self) -> None:
        self._ready.clear()
        self._rx.clear()
        self._offsets.clear()
        self._applied = None
        self.last_device_time = None
        self._silent = 0
        if self.start_command:
            self._write_fast(self.start_command.encode("ascii") + b"\n")

    def _on_close(self, ser: serial.SerialBase) -> None:
        if self.stop_command:
            with contextlib.suppress(Exception):  # the port may already be gone
                ser.write(self.stop_command.encode("ascii") + b"\n")

    # -- parsing ----------------------------------------------------------------------------
    def _offset(self, arrival: float, device_t: float) -> float:
        """Device-to-host offset: min(arrival - device time) over the recent window."""
        offs = self._offsets
        offs.append((arrival, arrival - device_t))
        horizon = arrival - self.offset_window
        while offs and offs[0][0] < horizon:
            offs.popleft()
        return min(o for _, o in offs)

    def _parse_chunk(self, arrival: float) -> None:
        rx = self._rx
        end = rx.rfind(b"\n")
        if end < 0:
            if len(rx) > _MAX_LINE:
                rx.clear()
                self.frame_errors += 1
            return
        lines = bytes(rx[:end]).split(b"\n")
        del rx[: end + 1]
        parsed: list[tuple[float | None, float, float | None, float | None]] = []
        it, iv, ia, iw, n = self._it, self._iv, self._ia, self._iw, self._ncols
        for raw in lines:
            fields = raw.split(b",")
            if len(fields) != n:
                if raw.strip():
                    self.frame_errors += 1
                continue
            try:
                volts = float(fields[iv]) if iv is not None else None
                amps = float(fields[ia]) if ia is not None else None
                watts = float(fields[iw]) if iw is not None else volts * amps  # type: ignore[operator]
                t_dev = float(fields[it]) * self.time_scale if it is not None else None
            except ValueError:
                self.frame_errors += 1
                continue
            if watts != watts or abs(watts) == float("inf"):  # NaN / inf
                self.frame_errors += 1
                continue
            parsed.append((t_dev, watts, volts, amps))
        if not parsed:
            return
        src = self.source
        ready = self._ready
        if it is None:
            period = 1.0 / float(self.rate_hz)  # type: ignore[arg-type]
            last = len(parsed) - 1
            for i, (_, watts, volts, amps) in enumerate(parsed):
                ready.append(PowerSample(arrival - (last - i) * period, watts, volts, amps, src))
            return
        last_dev = parsed[-1][0]
        assert last_dev is not None
        first_dev = parsed[0][0]
        assert first_dev is not None
        prev = self.last_device_time
        if prev is not None and first_dev < prev - 1.0:
            self._offsets.clear()  # device clock restarted: re-anchor
            self.resets += 1
            prev = None
        if self.rate_hz:
            # Count samples the device numbered but we never received (overruns, lost bytes).
            # Jumps of more than a second are discontinuities (garbled or restarted counter),
            # not a number of lost samples.
            rate = self.rate_hz
            for t_dev, *_ in parsed:
                if prev is not None:
                    step = t_dev - prev  # type: ignore[operator]
                    if 0 < step <= 1.0:
                        skipped = round(step * rate) - 1
                        if skipped > 0:
                            self.missed_samples += skipped
                    elif step != 0:
                        self.discontinuities += 1
                prev = t_dev
        self.last_device_time = last_dev
        target = self._offset(arrival, last_dev)
        before, before_at = self._applied, self._applied_at
        if before is None or prev is None:
            applied = target
        else:
            # Slew towards the new estimate by at most MAX_SLEW seconds per device second, so
            # timestamps stay increasing and sample spacing is distorted by <= 1%.
            limit = MAX_SLEW * max(last_dev - before_at, 0.0)
            applied = before + min(max(target - before, -limit), limit)
        self._applied, self._applied_at = applied, last_dev
        span = last_dev - before_at if before is not None and prev is not None else 0.0
        for t_dev, watts, volts, amps in parsed:
            if span > 0:
                # spread the correction over the batch, not onto its first step
                frac = min(max((t_dev - before_at) / span, 0.0), 1.0)  # type: ignore[operator]
                offset = before + (applied - before) * frac  # type: ignore[operator]
            else:
                offset = applied
            ready.append(PowerSample(t_dev + offset, watts, volts, amps, src))  # type: ignore[operator]

    # -- reading ----------------------------------------------------------------------------
    def read(self) -> PowerSample:
        ready = self._ready
        if ready:
            return ready.popleft()
        ser = self._port()
        while not ready:
            if self.batch_wait > 0:
                time.sleep(self.batch_wait)
            chunk = self._read_available()
            if not chunk:
                chunk = ser.read(1)  # block up to timeout for the stream to resume
                if not chunk:
                    self.timeouts += 1
                    self.frame_errors += 1
                    self._silent += 1
                    if self._silent >= self.max_silent_reads:
                        self._silent = 0
                        raise MeterDisconnected(f"{self.port}: stream silent")
                    raise FrameError(f"{self.port}: no data within {self.timeout} s")
                chunk += self._read_available()
            self._silent = 0
            self._rx += chunk
            self._parse_chunk(self._clock())
        return ready.popleft()
