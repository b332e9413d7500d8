"""The doorbell: event-driven wakeups between the htfl ServerApp and its agents, beside Flower.

Why: a Flower SuperNode cannot be told that a message waits for it; it asks the SuperLink
(htfl's agent every 50 ms while an experiment is active), and the ServerApp's Grid asks for
replies the same way. Every ask is an HTTP request that costs the SuperLink a few milliseconds
of CPU, so idle agents and the waiting ServerApp spend most of a small fleet's round in polls,
and a 20-agent fleet keeps the SuperLink busy doing nothing.

What: the ServerApp serves a tiny HTTP endpoint (``htfl.workstation.server.doorbell``) and,
right after its Grid pushed messages, rings the nodes they are for; an agent waits on it (a
long poll) instead of sleeping between SuperLink polls, and after pushing a reply says so, which
ends the ServerApp's wait for replies. A ring carries no data, only "ask the SuperLink now":
every message still travels through Flower. A ring that never comes (the endpoint is
unreachable, a message from elsewhere) costs at most :data:`RECHECK_SECONDS`, after which the
agent asks the SuperLink anyway; an agent that cannot reach the doorbell at all polls as before.

The endpoint's address travels as run config (:data:`RUN_CONFIG_KEY`, ``host:port`` where the
ServerApp binds it); an agent dials the port on the host it dials for the SuperLink. The port
is a free one per run, or the experiment's ``[superlink] doorbell_port`` where the lab's
firewall admits only known ports. Every request carries the run's token (:data:`TOKEN_KEY`,
also run config, so only the run's nodes have it); one without it is refused.
"""

from __future__ import annotations

import logging

import httpx

log = logging.getLogger(__name__)

#: Run-config key holding ``host:port`` for the ServerApp's doorbell ("" or absent: none).
RUN_CONFIG_KEY = "htfl-doorbell"
#: Run-config key holding the run's doorbell token, which every request carries in
#: :data:`TOKEN_HEADER` (the doorbell refuses a request without it).
TOKEN_KEY = "htfl-doorbell-token"
TOKEN_HEADER = "X-Htfl-Doorbell-Token"
#: Longest an agent waits for a ring before asking the SuperLink anyway.
RECHECK_SECONDS = 5.0
#: Connecting to the doorbell longer than this counts as unreachable.
CONNECT_TIMEOUT_SECONDS = 2.0


def port_of(address: object) -> int | None:
    """The port of a ``host:port`` doorbell address from run config (None: no doorbell)."""
    text = str(address or "")
    host, sep, port = text.rpartition(":")
    return int(port) if sep and port.isdigit() else None


class DoorbellClient:
    """The agent's end: wait for a ring for this node, and say a reply was pushed."""

    def __init__(self, host: str, port: int, token: str = "") -> None:
        self.address = f"{host}:{port}"
        self.token = token
        timeout = httpx.Timeout(RECHECK_SECONDS + 5.0, connect=CONNECT_TIMEOUT_SECONDS)
        # plain HTTP only: verify=False spares building a TLS context with the CA bundle
        # (about 0.3 s of CPU on a small board) for a client that never uses one
        self._client = httpx.Client(
            base_url=f"http://{self.address}",
            timeout=timeout,
            verify=False,
            headers={TOKEN_HEADER: token} if token else None,
        )
        self._seen = -1

    def wait(self, node_id: int, seconds: float = RECHECK_SECONDS) -> bool:
        """Until the node is rung (True) or ``seconds`` pass (False). Raises httpx.HTTPError
        when the doorbell cannot be reached."""
        res = self._client.get(
            "/wait", params={"node": node_id, "after": self._seen, "timeout": seconds}
        )
        res.raise_for_status()
        count = int(res.text)
        rung = count > self._seen
        self._seen = count
        return rung

    def replied(self, node_id: int) -> None:
        """Tell the ServerApp a reply from this node is in the SuperLink (best effort)."""
        try:
            self._client.post("/replied", params={"node": node_id})
        except httpx.HTTPError as err:
            log.debug("doorbell %s: reply notice not delivered: %s", self.address, err)

    def close(self) -> None:
        self._client.close()
