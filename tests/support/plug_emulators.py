"""Smart plugs' local HTTP APIs, emulated from their public documentation (a real HTTP server
on loopback; the code under test talks to it with urllib as it would to a plug on the LAN).

* Shelly Gen2+: ``GET /rpc/Switch.GetStatus?id=N`` -> the Switch component's status object
  (``id``, ``source``, ``output``, ``apower`` W, ``voltage`` V, ``current`` A, ``aenergy``
  {``total`` Wh, ``by_minute``, ``minute_ts``}, ``temperature``); an unknown id answers HTTP 500
  with an RPC error body. Source: Shelly API docs, Gen2 "Switch" component
  (https://shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/Switch).
* Tasmota: ``GET /cm?cmnd=Status%2010`` -> ``{"StatusSNS": {"Time": ..., "ENERGY":
  {"TotalStartTime", "Total", "Yesterday", "Today", "Power", "ApparentPower", "ReactivePower",
  "Factor", "Voltage", "Current"}}}``. Source: Tasmota docs, "Commands" (Status 10) and
  "Energy monitoring" (https://tasmota.github.io/docs/Commands/).

Faults: :meth:`PlugEmulator.inject` ``("garbage" | "error" | "slow", count)``.
"""

from __future__ import annotations

import collections
import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Waveform = Callable[[float], tuple[float, float]]


class PlugEmulator:
    """A plug of ``kind`` ``shelly`` or ``tasmota`` on 127.0.0.1 (``url``)."""

    def __init__(
        self, kind: str, waveform: Waveform, slow_seconds: float = 3.0, port: int = 0
    ) -> None:
        if kind not in ("shelly", "tasmota"):
            raise ValueError(kind)
        self.kind = kind
        self.waveform = waveform
        self.slow_seconds = slow_seconds
        self.requests = 0
        self.frames_sent = 0  # replies with a reading (the benchmark's name for it)
        self._faults: collections.deque[str] = collections.deque()
        emu = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                emu.requests += 1
                status, body = emu.answer(self.path)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def inject(self, fault: str, count: int = 1) -> None:
        self._faults.extend([fault] * count)

    def answer(self, path: str) -> tuple[int, str]:
        fault = self._faults.popleft() if self._faults else ""
        if fault == "slow":
            time.sleep(self.slow_seconds)
        if fault == "error":
            return 500, '{"code": -105, "message": "internal error"}'
        if fault == "garbage":
            return 200, "<html>captive portal</html>"
        volts, amps = self.waveform(time.time())
        self.frames_sent += 1
        url = urllib.parse.urlsplit(path)
        query = urllib.parse.parse_qs(url.query)
        if self.kind == "shelly":
            if url.path != "/rpc/Switch.GetStatus" or query.get("id") != ["0"]:
                return 500, '{"code": -105, "message": "Argument \'id\', value 1 not found!"}'
            return 200, json.dumps(
                {
                    "id": 0,
                    "source": "init",
                    "output": True,
                    "apower": round(volts * amps, 1),
                    "voltage": round(volts, 1),
                    "current": round(amps, 3),
                    "aenergy": {"total": 0.0, "by_minute": [0.0, 0.0, 0.0], "minute_ts": 0},
                    "temperature": {"tC": 40.0, "tF": 104.0},
                }
            )
        if url.path != "/cm" or query.get("cmnd") != ["Status 10"]:
            return 200, '{"Command": "Unknown"}'
        return 200, json.dumps(
            {
                "StatusSNS": {
                    "Time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "ENERGY": {
                        "TotalStartTime": "2024-01-01T00:00:00",
                        "Total": 0.0,
                        "Yesterday": 0.0,
                        "Today": 0.0,
                        "Power": round(volts * amps),
                        "ApparentPower": round(volts * amps),
                        "ReactivePower": 0,
                        "Factor": 1.0,
                        "Voltage": round(volts),
                        "Current": round(amps, 3),
                    },
                }
            }
        )

    def start(self) -> PlugEmulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> PlugEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
