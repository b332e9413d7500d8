"""The workstation's half of shard delivery: serve prepared shards, or stage them for Ansible.

The device's half (fetching, verifying and loading its own shard) is
:mod:`htfl.datasets.delivery`; the delivery modes are described there and in docs/datasets.md.
``http``: the ServerApp serves the prepared directory (:class:`ShardServer`, stdlib
``http.server`` with ``Range`` support, one thread per connection: plenty for tens of devices
fetching a few MB each). ``ansible``: :func:`stage_for_ansible` lays the files out for the
``datasets`` role. Only the workstation needs this, so it is not in the device wheel.
"""

from __future__ import annotations

import dataclasses
import http.server
import logging
import os
import re
import shutil
import socket
import threading
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from htfl.datasets.store import MANIFEST, Manifest, ManifestError

__all__ = ["ShardServer", "advertised_host", "stage_for_ansible", "start_shard_delivery"]

log = logging.getLogger(__name__)

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 1 << 20


# --------------------------------------------------------------------------- HTTP server


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "htfl-shards/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        log.debug("%s %s", self.address_string(), format % args)

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib name
        self._serve(send_body=False)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._serve(send_body=True)

    def _serve(self, send_body: bool) -> None:
        name = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        if name not in self.server.allowed:
            self.send_error(404, "not a file of this preparation")
            return
        path = self.server.root / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            self.send_error(404, "listed in the manifest but missing on the server")
            return
        start, end, status = 0, size - 1, 200
        header = self.headers.get("Range")
        if header:
            match = _RANGE.match(header.strip())
            if match and (match.group(1) or match.group(2)):
                first, last = match.group(1), match.group(2)
                if first:
                    start = int(first)
                    end = min(int(last), size - 1) if last else size - 1
                else:  # suffix range: the last N bytes
                    start = max(size - int(last), 0)
                if start >= size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        length = end - start + 1 if size else 0
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        etag = self.server.etags.get(name)
        if etag:
            self.send_header("ETag", f'"{etag}"')
        self.end_headers()
        if not send_body:
            return
        sent = 0
        with open(path, "rb") as fh:
            fh.seek(start)
            while sent < length:
                chunk = fh.read(min(_CHUNK, length - sent))
                if not chunk:
                    break
                self.wfile.write(chunk)
                sent += len(chunk)
        self.server.count(name, sent)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    allowed: frozenset[str]
    etags: dict[str, str]
    bytes_sent: Counter
    requests: Counter
    _lock: threading.Lock

    def count(self, name: str, sent: int) -> None:
        with self._lock:
            self.bytes_sent[name] += sent
            self.requests[name] += 1


class ShardServer:
    """Serve one prepared directory (its manifest and the files it lists) over HTTP.

    Only ``manifest.json`` and the shard files named in it can be fetched; ``Range``
    requests are answered with 206 so an agent can resume. ``bytes_sent`` / ``requests``
    count what went out per file (what the tests and the logs use).
    """

    def __init__(self, directory: str | os.PathLike, host: str = "127.0.0.1", port: int = 0):
        manifest = Manifest.read(directory)
        self.manifest = manifest
        server = _Server((host, port), _Handler)
        server.root = manifest.directory
        server.etags = {e.file: e.sha256 for e in manifest.clients()}
        server.allowed = frozenset([MANIFEST, *server.etags])
        server.bytes_sent = Counter()
        server.requests = Counter()
        server._lock = threading.Lock()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="htfl-shard-server", daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def url(self, host: str | None = None) -> str:
        """Base URL; ``host`` overrides the bound address (needed when bound to 0.0.0.0)."""
        bound, port = self.address
        name = host or (advertised_host() if bound in ("0.0.0.0", "::", "") else bound)
        return f"http://{name}:{port}/"

    @property
    def bytes_sent(self) -> Counter:
        return self._server.bytes_sent

    @property
    def requests(self) -> Counter:
        return self._server.requests

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ShardServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def advertised_host() -> str:
    """This machine's address on its default route (no packet is sent), else loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))
            return str(sock.getsockname()[0])
        except OSError:
            return "127.0.0.1"


# --------------------------------------------------------------------------- ServerApp


def start_shard_delivery(experiment: Any, results: Any = None) -> tuple[Any, ShardServer | None]:
    """On the ServerApp: check the prepared shards and, for ``http``, start serving them.

    Returns the experiment with ``data.shard_url`` filled in (what the setup message sends)
    and the server to close at the end (None when nothing is served here). With
    ``results`` (a ResultsStore), records the delivery in ``data.json``.
    """
    data = experiment.data
    if data.delivery == "build":
        return experiment, None
    manifest = Manifest.read(data.manifest, expected_sha256=data.shards_sha256 or None)
    if manifest.num_clients != experiment.devices.count:
        raise ManifestError(
            f"{manifest.path}: the shards were prepared for {manifest.num_clients} clients "
            f"but [devices] selects {experiment.devices.count}"
        )
    server = None
    url = data.shard_url
    if data.delivery == "http" and data.serve_port >= 0:
        server = ShardServer(manifest.directory, data.serve_host, data.serve_port)
        url = data.shard_url or server.url()
        log.info("serving shards of %s at %s", manifest.path, url)
    experiment = dataclasses.replace(
        experiment,
        data=dataclasses.replace(data, shard_url=url, shards_sha256=manifest.content_sha256),
    )
    if results is not None:
        results.write_json(
            "data.json",
            {
                "delivery": data.delivery,
                "manifest": str(manifest.path),
                "content_sha256": manifest.content_sha256,
                "url": url,
                "dataset": manifest.dataset,
                "partition": manifest.partition,
                "seed": manifest.seed,
                "num_clients": manifest.num_clients,
                "clients": [
                    {
                        "client_index": e.client_index,
                        "file": e.file,
                        "sha256": e.sha256,
                        "num_train": e.num_train,
                        "num_test": e.num_test,
                        "group": e.group,
                    }
                    for e in manifest.clients()
                ],
            },
        )
    return experiment, server


# --------------------------------------------------------------------------- ansible


def stage_for_ansible(
    manifest_path: str | os.PathLike, hosts: Sequence[str], out: str | os.PathLike
) -> dict[str, list[Path]]:
    """Lay out a preparation for the ``datasets`` role: ``out/common`` and ``out/<host>``.

    Client ``i`` belongs to ``hosts[i]``. ``out/common/shards/<hash16>/manifest.json``
    goes to every device and ``out/<host>/shards/<hash16>/client-NNNNN.npz`` only to that
    host, so each lands in ``<data dir>/shards/<hash16>/`` on its device. Files are hard
    links where possible (copies otherwise). Returns the files written per directory.
    """
    manifest = Manifest.read(manifest_path)
    hosts = list(hosts)
    if len(hosts) != manifest.num_clients:
        raise ValueError(
            f"{manifest.path} has {manifest.num_clients} clients but {len(hosts)} hosts were "
            "given; list one host per client, in client order"
        )
    if len(set(hosts)) != len(hosts):
        raise ValueError("a host is listed twice")
    out = Path(out)
    key = manifest.content_sha256[:16]
    written: dict[str, list[Path]] = {}

    def place(src: Path, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        try:
            os.link(src, dest)
        except OSError:
            shutil.copy2(src, dest)

    common = out / "common" / "shards" / key / MANIFEST
    place(manifest.path, common)
    written["common"] = [common]
    for host, entry in zip(hosts, manifest.clients(), strict=True):
        dest = out / host / "shards" / key / entry.file
        place(manifest.directory / entry.file, dest)
        written[host] = [dest]
    return written
