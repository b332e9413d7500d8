"""Raw power traces: ``results/<id>/power/<device>.csv``, one row per power sample.

Columns: ``t`` (server-clock seconds), ``watts``, ``volts``, ``amps`` (empty where the meter
does not measure them), ``meter`` (the source label) and ``scope`` (what the meter measures).
Rows are appended as samples arrive and flushed at least once a second, so memory stays bounded
and an interrupted run keeps what it measured. Floats are written in Python's shortest exact
form, so a recomputation from the file sees the very numbers the run priced rounds with.
"""

from __future__ import annotations

import csv
import math
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

TRACE_DIR = "power"
TRACE_FIELDS = ("t", "watts", "volts", "amps", "meter", "scope")
FLUSH_SECONDS = 1.0


class TraceRow(NamedTuple):
    t: float
    watts: float
    volts: float | None
    amps: float | None
    meter: str
    scope: str


def _num(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else repr(float(value))


class TraceWriter:
    """Appends samples to one CSV file per device; thread-safe (samplers call it)."""

    def __init__(self, results_dir: str | Path) -> None:
        self.dir = Path(results_dir) / TRACE_DIR
        self._files: dict[str, tuple[IO[str], Any]] = {}  # file, csv writer
        self._flushed = time.monotonic()
        self._lock = threading.Lock()
        self.rows_written = 0

    def path(self, device: str) -> Path:
        return self.dir / f"{device}.csv"

    def append(
        self,
        device: str,
        samples: Iterable[tuple[float, float, float | None, float | None]],
        meter: str,
        scope: str,
        *,
        flush: bool = False,
    ) -> int:
        """Write ``(t, watts, volts, amps)`` rows (server clock); returns how many."""
        n = 0
        with self._lock:
            _, writer = self._open(device)
            for t, watts, volts, amps in samples:
                writer.writerow(
                    (repr(float(t)), _num(watts), _num(volts), _num(amps), meter, scope)
                )
                n += 1
            self.rows_written += n
            now = time.monotonic()
            if flush or now - self._flushed >= FLUSH_SECONDS:
                self._flushed = now
                for fh, _ in self._files.values():
                    fh.flush()
        return n

    def _open(self, device: str) -> tuple[IO[str], Any]:
        if device not in self._files:
            self.dir.mkdir(parents=True, exist_ok=True)
            path = self.path(device)
            new = not path.exists() or path.stat().st_size == 0
            fh = path.open("a", newline="", encoding="utf-8")
            writer = csv.writer(fh)
            if new:
                writer.writerow(TRACE_FIELDS)
            self._files[device] = (fh, writer)
        return self._files[device]

    def close(self) -> None:
        with self._lock:
            for fh, _ in self._files.values():
                fh.close()
            self._files.clear()


def read_trace(path: str | Path) -> Iterator[TraceRow]:
    """The rows of one trace file, in file order."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            yield TraceRow(
                float(rec["t"]),
                float(rec["watts"]),
                float(rec["volts"]) if rec["volts"] else None,
                float(rec["amps"]) if rec["amps"] else None,
                rec["meter"],
                rec["scope"],
            )
