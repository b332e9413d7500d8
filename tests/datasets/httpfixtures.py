"""A local HTTP server for download tests: Range support, request log, injectable faults."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class _Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        server = self.server
        path = Path(server.root) / self.path.lstrip("/")
        server.log.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng and server.ranges:
            start = int(rng.split("=")[1].split("-")[0])
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        time.sleep(server.delay)
        if server.cut_after is not None:  # send part of the body, then drop the connection
            cut, server.cut_after = server.cut_after, None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)
        server.sent += len(body)


@contextmanager
def file_server(root: Path, *, ranges: bool = True) -> Iterator[http.server.HTTPServer]:
    """Serve ``root``; ``server.cut_after = n`` makes the next response stop after n bytes."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.root = str(root)
    server.log = []
    server.ranges = ranges
    server.cut_after = None
    server.sent = 0
    server.delay = 0.0  # seconds before each body: keeps concurrent downloads overlapping
    server.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
