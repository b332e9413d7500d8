"""Building blocks shared by every platform probe.

A probe reads a handful of files below a configurable root directory (``/`` on a
device, a fixture tree in tests) and returns :class:`Series` values.  A probe
signals "not available" by raising: :class:`ProbeUnavailable` for an expected
absence (no such file on this board), ``OSError`` for unreadable files
(``PermissionError`` on Android, ``IsADirectoryError``...) and ``ValueError`` for
malformed content.  The sampler turns any of these into
``htfl_device_probe_up{probe=...} 0`` and omits the probe's series; a probe never
needs to catch its own failures.

All file access goes through :class:`SysReader`, whose *opener* hook lets tests
inject failures (for example ``PermissionError`` when running as root, where a
mode-000 file would still be readable).
"""

from __future__ import annotations

import glob
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "Labels",
    "Opener",
    "Probe",
    "ProbeUnavailable",
    "Series",
    "SysReader",
    "default_opener",
    "first_readable",
    "natural_key",
]

Labels = tuple[tuple[str, str], ...]
Opener = Callable[[str], str]

# sysfs attributes are at most one page; /proc/stat on a 128-core box is ~20 KiB.
# Reading in small chunks matters: a single read(1 MiB) allocates (and then
# shrinks) a 1 MiB buffer every call, which costs more than the read itself.
_CHUNK = 16 * 1024
_MAX_READ = 1 << 20


class ProbeUnavailable(Exception):
    """The probe's source does not exist on this device (not an error)."""


@dataclass(frozen=True, slots=True)
class Series:
    """One exported value: full exposition name, extra labels, value.

    ``labels`` holds only the metric-specific labels (``cpu``, ``zone``...); the
    collector adds ``device`` and ``device_class`` to every series.
    """

    name: str
    labels: Labels
    value: float

    @classmethod
    def of(cls, name: str, value: float, **labels: str) -> Series:
        return cls(name, tuple(sorted(labels.items())), float(value))


def default_opener(path: str) -> str:
    """Read a whole (small) file as text; sysfs/procfs files are ASCII."""
    chunks: list[bytes] = []
    size = 0
    with open(path, "rb", buffering=0) as fh:
        while size < _MAX_READ:
            chunk = fh.read(_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple:
    """Sort key that orders ``cpu2`` before ``cpu10``."""
    return tuple(int(part) if part.isdigit() else part for part in _DIGITS.split(text))


class SysReader:
    """Reads files relative to *root* through an injectable *opener*."""

    def __init__(self, root: str | os.PathLike[str] = "/", opener: Opener | None = None) -> None:
        self.root = os.fspath(root)
        self.opener: Opener = opener or default_opener

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel.lstrip("/"))

    def read_text(self, rel: str) -> str:
        return self.opener(self.path(rel))

    def read_line(self, rel: str) -> str:
        """First line, stripped, without the NUL that device-tree strings carry."""
        text = self.read_text(rel).replace("\x00", "\n").strip()
        return text.splitlines()[0].strip() if text else ""

    def read_int(self, rel: str) -> int:
        line = self.read_line(rel)
        try:
            return int(line)
        except ValueError:
            raise ValueError(f"{self.path(rel)}: expected an integer, got {line[:40]!r}") from None

    def exists(self, rel: str) -> bool:
        return os.path.exists(self.path(rel))

    def glob(self, pattern: str) -> list[str]:
        """Paths (relative to root) matching *pattern*, in natural order."""
        base = glob.escape(self.root.rstrip("/") or "/")
        full = os.path.join(base, pattern.lstrip("/"))
        strip = len(os.path.join(self.root, ""))
        found = [p[strip:] for p in glob.glob(full)]
        return sorted(found, key=natural_key)


class Probe:
    """Base class: subclasses set :attr:`name` and implement :meth:`read`.

    ``name`` is the value of the ``probe`` label of ``htfl_device_probe_up``.
    Probes may keep state between calls (previous counters for rates, cached
    discovery of which files exist); the sampler calls :meth:`read` from one
    thread at a time.
    """

    name: str = "probe"
    # How long a directory discovery (glob) result is reused before globbing again.
    rediscover_seconds: float = 30.0

    def __init__(self, reader: SysReader) -> None:
        self.reader = reader
        self._discovery: dict[str, tuple[float, list[str]]] = {}

    def read(self) -> list[Series]:  # pragma: no cover - abstract
        raise NotImplementedError

    def discover(self, pattern: str, *, refresh: bool = False) -> list[str]:
        """Cached :meth:`SysReader.glob` (re-run every ``rediscover_seconds``)."""
        now = time.monotonic()
        cached = self._discovery.get(pattern)
        if refresh or cached is None or now - cached[0] > self.rediscover_seconds:
            cached = (now, self.reader.glob(pattern))
            self._discovery[pattern] = cached
        return cached[1]

    def forget_discovery(self) -> None:
        self._discovery.clear()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={self.reader.root!r})"


def first_readable(reader: SysReader, candidates: Iterable[str]) -> tuple[str, str]:
    """Return ``(rel_path, text)`` of the first candidate that can be read.

    Raises :class:`ProbeUnavailable` when none exists, or re-raises the first
    read error (e.g. ``PermissionError``) when some exist but none is readable.
    """
    first_error: OSError | None = None
    for rel in candidates:
        try:
            return rel, reader.read_text(rel)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if first_error is None:
                first_error = exc
    if first_error is not None:
        raise first_error
    raise ProbeUnavailable("none of the candidate files exists")
