"""Serial-port plumbing shared by the UM and SCPI drivers (pyserial underneath)."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import serial

from htfl.device.power.meter import Clock, Meter, MeterDisconnected


class SerialMeter(Meter):
    """A meter reached through a (possibly Bluetooth RFCOMM) serial port.

    ``port`` is a device path (``/dev/ttyUSB0``, ``/dev/rfcomm0``, a symlink to either) or any
    pyserial URL (``socket://host:port``, ``rfc2217://...``); it is opened with
    :func:`serial.serial_for_url`. ``timeout`` bounds one read. Pending input is discarded on
    open so that bytes queued while nobody listened are not mistaken for fresh readings.
    """

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        timeout: float = 1.0,
        device: str = "",
        source: str | None = None,
        clock: Clock = time.time,
        serial_options: dict[str, Any] | None = None,
    ):
        super().__init__(device=device, source=source, clock=clock)
        self.port = port
        self.baudrate = int(baudrate)
        self.timeout = float(timeout)
        self._serial_options = dict(serial_options or {})
        self._ser: serial.SerialBase | None = None
        self._fd: int | None = None

    def open(self) -> None:
        if self._ser is not None:
            return
        ser = serial.serial_for_url(
            self.port,
            baudrate=self.baudrate,
            timeout=self.timeout,
            write_timeout=max(self.timeout, 1.0),
            **self._serial_options,
        )
        try:
            ser.reset_input_buffer()
            self._ser = ser
            self._fd = _posix_fd(ser)
            self._on_open()
        except BaseException:
            self._ser = None
            self._fd = None
            _close_quietly(ser)
            raise
        self._is_open = True

    def _on_open(self) -> None:
        """Hook for subclasses (send set-up commands). Runs with ``self._ser`` set."""

    def close(self) -> None:
        ser, self._ser = self._ser, None
        self._fd = None
        self._is_open = False
        if ser is not None:
            self._on_close(ser)
            _close_quietly(ser)

    def _on_close(self, ser: serial.SerialBase) -> None:
        """Hook for subclasses (e.g. leave remote mode); must not raise."""

    # Hot-path I/O. pyserial's read()/write() cost a select() per call on top of the actual
    # system call; at 1 kS/s that overhead matters, so for local (POSIX) ports the sampler's
    # hot path uses the descriptor pyserial opened (non-blocking) and falls back to pyserial
    # whenever it would have to wait.
    def _write_fast(self, data: bytes) -> None:
        fd = self._fd
        if fd is not None:
            try:
                n = os.write(fd, data)
            except BlockingIOError:
                n = 0
            if n == len(data):
                return
            data = data[n:]
        self._port().write(data)

    def _read_available(self) -> bytes:
        """Whatever input is already there, without waiting (may be empty)."""
        fd = self._fd
        if fd is not None:
            try:
                # pyserial sets VMIN=VTIME=0, so "nothing yet" reads as b"" (or EAGAIN); a
                # hung-up port raises EIO here or is detected by the blocking path.
                return os.read(fd, 4096)
            except BlockingIOError:
                return b""
        ser = self._port()
        waiting = ser.in_waiting
        return ser.read(waiting) if waiting else b""

    def _port(self) -> serial.SerialBase:
        ser = self._ser
        if ser is None:
            raise MeterDisconnected(f"{self.port}: not open")
        return ser


def _posix_fd(ser: serial.SerialBase) -> int | None:
    """The non-blocking descriptor of a local POSIX port, or None (URLs, other platforms)."""
    posix = getattr(serial, "serialposix", None)
    if posix is None or not isinstance(ser, posix.Serial):
        return None
    fd = getattr(ser, "fd", None)
    if not isinstance(fd, int) or fd < 0:
        return None
    try:
        return fd if not os.get_blocking(fd) else None
    except OSError:
        return None


def _close_quietly(ser: serial.SerialBase) -> None:
    with contextlib.suppress(Exception):  # closing a vanished port can fail in many ways
        ser.close()
