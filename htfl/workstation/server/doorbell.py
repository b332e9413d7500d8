"""The ServerApp's end of the doorbell (see :mod:`htfl.doorbell`): rings nodes after a push,
hears that replies are in.

A stdlib threaded HTTP server, since it only answers two tiny requests; the ServerApp's
message exchange (``exchange.py``) rings through :data:`current` and waits on its
``replies`` event instead of polling the SuperLink every few milliseconds.

It carries no data, but anyone who can reach it could learn when nodes are rung and make the
ServerApp ask the SuperLink early, so each run gets a random token (run config
:data:`htfl.doorbell.TOKEN_KEY`, which only the run's nodes receive, through Flower); a
request without it is refused at once (403), holds no thread and changes nothing. What the
doorbell did in a run (waits answered and reply notices per node, requests refused) goes into
``summary.json`` (``doorbell``), so a run shows whether its agents used it.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from htfl.doorbell import RUN_CONFIG_KEY, TOKEN_HEADER, TOKEN_KEY
from htfl.ports import free_port

log = logging.getLogger(__name__)

#: Longest single wait an agent may ask for (its own bound is shorter).
MAX_WAIT_SECONDS = 30.0


class Doorbell:
    """Per-node ring counters an agent long-polls, and an event set when a reply is in."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str = "") -> None:
        self._cond = threading.Condition()
        self._rings: dict[int, int] = defaultdict(int)
        #: what a request must carry (TOKEN_HEADER); "" admits any (a test's bell)
        self.token = token
        #: per node: long polls answered, reply notices heard; requests refused (no token)
        self.waits: dict[int, int] = defaultdict(int)
        self.notices: dict[int, int] = defaultdict(int)
        self.refused = 0
        #: Set whenever an agent says its reply is in the SuperLink.
        self.replies = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="htfl-doorbell", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def ring(self, node_ids: Iterable[int]) -> None:
        with self._cond:
            for node in node_ids:
                self._rings[int(node)] += 1
            self._cond.notify_all()

    def wait(self, node_id: int, after: int, seconds: float) -> int:
        """The node's ring count once it exceeds ``after``, or after ``seconds``."""
        with self._cond:
            self.waits[node_id] += 1
            self._cond.wait_for(
                lambda: self._rings[node_id] > after, min(max(seconds, 0.0), MAX_WAIT_SECONDS)
            )
            return self._rings[node_id]

    def heard(self, node_id: int) -> None:
        """A node says its reply is in the SuperLink."""
        with self._cond:
            self.notices[node_id] += 1
        self.replies.set()

    def admits(self, token: str | None) -> bool:
        """Whether a request carrying ``token`` is the run's (counted as refused if not)."""
        if not self.token or hmac.compare_digest(token or "", self.token):
            return True
        with self._cond:
            self.refused += 1
        return False

    def record(self) -> dict:
        """What the doorbell did (``summary.json``'s ``doorbell``); node ids as strings."""
        with self._cond:
            return {
                "port": self.port,
                "waits": {str(n): c for n, c in sorted(self.waits.items())},
                "reply_notices": {str(n): c for n, c in sorted(self.notices.items())},
                "refused": self.refused,
            }

    def close(self) -> None:
        with self._cond:  # waiting agents answer at once (with no ring) and retry elsewhere
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()


def _handler(bell: Doorbell) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: one connection per agent

        def _answer(self, code: int, body: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _query(self) -> tuple[str, dict[str, str]]:
            url = urlparse(self.path)
            return url.path, {k: v[-1] for k, v in parse_qs(url.query).items()}

        def _admitted(self) -> bool:
            if bell.admits(self.headers.get(TOKEN_HEADER)):
                return True
            self._answer(403, "not this run's doorbell")
            return False

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if not self._admitted():
                return
            path, q = self._query()
            try:
                node, after, seconds = int(q["node"]), int(q["after"]), float(q["timeout"])
            except (KeyError, ValueError):
                self._answer(400, "expected /wait?node=INT&after=INT&timeout=SECONDS")
                return
            if path != "/wait":
                self._answer(404, "not found")
                return
            self._answer(200, str(bell.wait(node, after, seconds)))

        def do_POST(self) -> None:  # noqa: N802
            if not self._admitted():
                return
            path, q = self._query()
            try:
                node = int(q["node"])
            except (KeyError, ValueError):
                node = -1  # an older agent's notice: still a reply
            if path != "/replied":
                self._answer(404, "not found")
                return
            bell.heard(node)
            self._answer(200, "ok")

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # one line per long poll would drown the ServerApp's log

    return Handler


#: The doorbell of this ServerApp process, once :func:`start` ran (None: agents poll).
current: Doorbell | None = None


def address_for(superlink_address: str, port: int = 0) -> str:
    """Where a run's doorbell should listen (run config :data:`RUN_CONFIG_KEY`): loopback
    beside a loopback SuperLink, every interface otherwise (agents dial the SuperLink's host);
    on ``port`` (``[superlink] doorbell_port``: a port the lab's firewall admits), or any free
    one (0); "" for -1 (no doorbell: agents poll)."""
    if port < 0:
        return ""
    host = superlink_address.rpartition(":")[0].strip("[]") or "127.0.0.1"
    loopback = host in ("localhost", "::1") or host.startswith("127.")
    bind = "127.0.0.1" if loopback else "0.0.0.0"
    return f"{bind}:{port or free_port(bind)}"


def run_config_for(superlink_address: str, port: int = 0) -> dict[str, str]:
    """The run config of a run's doorbell: its address (:func:`address_for`) and a fresh
    token that every request to it must carry."""
    address = address_for(superlink_address, port)
    return {RUN_CONFIG_KEY: address, TOKEN_KEY: secrets.token_urlsafe(24) if address else ""}


def start(run_config: Mapping[str, object]) -> Doorbell | None:
    """Serve the doorbell named in run config (:data:`htfl.doorbell.RUN_CONFIG_KEY`); None
    (with a logged warning if it was named but cannot be bound): the exchange polls instead."""
    global current
    address = str(run_config.get(RUN_CONFIG_KEY, "") or "")
    host, _, port = address.rpartition(":")
    if not address or not port.isdigit():
        return None
    try:
        current = Doorbell(host or "127.0.0.1", int(port), str(run_config.get(TOKEN_KEY, "") or ""))
    except OSError as err:
        log.warning("doorbell %s not served (%s): agents and the exchange poll", address, err)
        return None
    return current


def stop() -> dict | None:
    """Stop this process's doorbell; what it did (:meth:`Doorbell.record`; None: none ran)."""
    global current
    if current is None:
        return None
    record = current.record()
    current.close()
    current = None
    return record
