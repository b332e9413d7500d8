"""Checksums, atomic file writes and resumable HTTP downloads.

Everything that brings bytes onto a disk here (an upstream archive on the workstation, a
shard on a device) goes through :func:`download` or :func:`atomic_path`: bytes land in a
``*.part`` file or a hidden temporary path, are verified, and only then take their final
name. A corrupt, truncated or interrupted transfer therefore never leaves a file that looks
whole, and a :class:`ChecksumError` names the file and the checksum it should have had.

Only the standard library is used: ``urllib.request`` handles ``Range`` requests well enough
for files of a few MB to a few GB, and devices (Jetson, Termux phones) need nothing extra.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Checksum",
    "ChecksumError",
    "DownloadError",
    "DownloadResult",
    "atomic_path",
    "download",
    "file_digests",
    "sha256_file",
    "verify_file",
]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_HEX = re.compile(r"^[0-9a-f]+$")
_LENGTHS = {"md5": 32, "sha256": 64}


@dataclass(frozen=True)
class Checksum:
    """An expected digest: ``algorithm`` (``"sha256"`` or ``"md5"``) and lowercase ``hex``."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        if self.algorithm not in _LENGTHS:
            raise ValueError(f"checksum algorithm must be sha256 or md5, got {self.algorithm!r}")
        if len(self.hex) != _LENGTHS[self.algorithm] or not _HEX.match(self.hex):
            raise ValueError(
                f"a {self.algorithm} checksum is {_LENGTHS[self.algorithm]} lowercase hex "
                f"digits, got {self.hex!r}"
            )

    @classmethod
    def parse(cls, text: str | Checksum) -> Checksum:
        """``"sha256:<hex>"``, ``"md5:<hex>"``, or bare hex (64 digits: sha256, 32: md5)."""
        if isinstance(text, Checksum):
            return text
        value = str(text).strip().lower()
        if ":" in value:
            algorithm, _, digest = value.partition(":")
            return cls(algorithm, digest)
        for algorithm, length in _LENGTHS.items():
            if len(value) == length:
                return cls(algorithm, value)
        raise ValueError(f"not a sha256 (64 hex digits) or md5 (32) checksum: {text!r}")

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


class ChecksumError(ValueError):
    """A file's digest is not one of the expected ones (corrupt, truncated or another file)."""

    def __init__(
        self, path: str | os.PathLike, expected: Sequence[Checksum], actual: dict[str, str]
    ) -> None:
        self.path = str(path)
        self.expected = tuple(expected)
        self.actual = dict(actual)
        wanted = " or ".join(str(c) for c in self.expected)
        got = ", ".join(f"{a}:{h}" for a, h in sorted(self.actual.items()))
        super().__init__(
            f"{self.path}: checksum mismatch: expected {wanted}, got {got} "
            "(the file is corrupt, truncated or not the published one)"
        )


class DownloadError(OSError):
    """A download failed for a reason other than a checksum mismatch."""


def file_digests(
    path: str | os.PathLike, algorithms: Iterable[str] = ("sha256",)
) -> dict[str, str]:
    """Digests of ``path`` for each algorithm, computed in one pass over the file."""
    hashers = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            for h in hashers.values():
                h.update(chunk)
    return {name: h.hexdigest() for name, h in hashers.items()}


def sha256_file(path: str | os.PathLike) -> str:
    return file_digests(path, ("sha256",))["sha256"]


def verify_file(path: str | os.PathLike, expected: Sequence[Checksum] | Checksum) -> dict[str, str]:
    """Check ``path`` against any of ``expected``; return its digests (always incl. sha256).

    Raises :class:`ChecksumError` (naming the file and the expected checksums) on mismatch
    and FileNotFoundError if the file does not exist. Nothing is written.
    """
    wanted = (expected,) if isinstance(expected, Checksum) else tuple(expected)
    algorithms = {"sha256", *(c.algorithm for c in wanted)}
    digests = file_digests(path, sorted(algorithms))
    if wanted and not any(digests[c.algorithm] == c.hex for c in wanted):
        raise ChecksumError(path, wanted, digests)
    return digests


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``final``; on success rename it to ``final``.

    On any exception (including KeyboardInterrupt) the temporary file is removed, so
    ``final`` either keeps its previous content or appears complete, never half-written.
    """
    final = Path(final)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    bytes_downloaded: int  # bytes that crossed the network in this call
    resumed_from: int  # size of the partial file this call continued from
    cached: bool  # the file was already there and verified: nothing was fetched
    digests: dict[str, str]


def _content_range_start(header: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", header or "")
    return int(match.group(1)) if match else None


def download(
    urls: str | Sequence[str],
    dest: str | os.PathLike,
    expected: Sequence[Checksum] | Checksum | None,
    *,
    attempts: int = 5,
    timeout: float = 30.0,
    backoff: float = 0.5,
) -> DownloadResult:
    """Fetch ``dest`` from the first URL that works, resuming a partial ``dest.part``.

    * ``dest`` already present and matching ``expected``: nothing is fetched (``cached``).
    * Otherwise bytes go to ``dest.part``; an existing ``.part`` is continued with a
      ``Range`` request (a server that answers 200 instead of 206 restarts it). A dropped
      connection is retried up to ``attempts`` times, each time from where it stopped.
    * When complete the ``.part`` is verified: on a mismatch it is deleted and
      :class:`ChecksumError` raised; on success it is renamed to ``dest``.

    ``expected=None`` accepts any content (the caller verifies some other way).

    Two processes fetching the same ``dest`` (two agents sharing a data directory) take turns
    on a lock on its directory: the second finds the first one's verified file and fetches nothing.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest):
        return _download(urls, dest, expected, attempts, timeout, backoff)


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``dest``'s directory (released if the process dies).

    Locking the directory rather than a lock file beside ``dest`` leaves nothing behind.
    """
    fd = os.open(dest.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _download(
    urls: str | Sequence[str],
    dest: Path,
    expected: Sequence[Checksum] | Checksum | None,
    attempts: int,
    timeout: float,
    backoff: float,
) -> DownloadResult:
    url_list = [urls] if isinstance(urls, str) else list(urls)
    if not url_list:
        raise ValueError("download needs at least one URL")
    wanted: tuple[Checksum, ...] = (
        ()
        if expected is None
        else (expected,)
        if isinstance(expected, Checksum)
        else tuple(expected)
    )
    if dest.exists():
        try:
            return DownloadResult(dest, 0, 0, True, verify_file(dest, wanted))
        except ChecksumError:
            log.warning("%s does not match its checksum; fetching it again", dest)
            dest.unlink()
    part = dest.with_name(dest.name + ".part")
    resumed_from = part.stat().st_size if part.exists() else 0
    fetched = 0
    errors: list[str] = []
    done = False
    for url in url_list:
        for attempt in range(attempts):
            offset = part.stat().st_size if part.exists() else 0
            received = [0]
            try:
                _fetch_into(url, part, offset, timeout, received)
                done = True
                break
            except _Restart:
                part.unlink(missing_ok=True)
                errors.append(f"{url}: the server cannot resume; restarting")
                continue
            except urllib.error.HTTPError as err:
                errors.append(f"{url}: HTTP {err.code}")
                if err.code in (401, 403, 404, 410):
                    break  # this URL will not work: try the next one
            except (OSError, TimeoutError, http.client.HTTPException) as err:
                errors.append(f"{url}: {err}")
                log.info("download of %s interrupted (%s); retry %d", url, err, attempt + 1)
            finally:
                fetched += received[0]
            time.sleep(backoff * (attempt + 1))
        if done:
            break
    if not done:
        raise DownloadError(f"could not download {dest.name}: " + "; ".join(errors[-4:]))
    try:
        digests = verify_file(part, wanted)
    except ChecksumError as err:
        part.unlink(missing_ok=True)
        raise ChecksumError(dest, err.expected, err.actual) from None
    os.replace(part, dest)
    return DownloadResult(dest, fetched, resumed_from, False, digests)


class _Restart(Exception):
    """The server cannot continue the partial file; start from zero."""


def _fetch_into(url: str, part: Path, offset: int, timeout: float, received: list[int]) -> None:
    """Append the bytes of ``url`` from ``offset`` to ``part``, counting them in ``received``."""
    headers = {"User-Agent": "htfl", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) only
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            return  # nothing left to send: the part is complete (the checksum decides)
        raise
    with response:
        if offset and response.status == 200:
            mode = "wb"  # the server ignored the range: start over
        elif offset and response.status == 206:
            if _content_range_start(response.headers.get("Content-Range")) != offset:
                raise _Restart
            mode = "ab"
        else:
            mode = "wb"
        length = response.headers.get("Content-Length")
        with open(part, mode) as fh:
            got = 0
            while chunk := response.read(_CHUNK):
                fh.write(chunk)
                got += len(chunk)
                received[0] += len(chunk)
        if length is not None and got < int(length):
            raise ConnectionError(f"connection closed after {got} of {length} bytes")
