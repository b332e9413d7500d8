"""Deadlines on modelled time: which virtual clients a real fleet would have waited for.

In Flower's simulation runtime hundreds of virtual clients share a few cores, so when a reply
arrives says nothing about the device; the wall clock deadline is lifted there, and a reply
whose modelled round time (download + train + upload, :mod:`.cost`) exceeds the round's
deadline is a straggler: recorded as ``late`` with its modelled figures, not merged.
"""

from __future__ import annotations

from flwr.app import Message
from flwr.serverapp import Grid

from htfl import protocol
from htfl.workstation.server.exchange import Exchange

#: Reply metric set by the simulated client: its modelled round seconds.
MODELLED_ROUND = "modelled_round_seconds"


def is_simulated(grid: Grid) -> bool:
    """True in Flower's simulation runtime, whose ServerApp talks to an in-memory grid (a
    deployed SuperLink's ServerApp gets an HTTP or gRPC grid)."""
    return type(grid).__name__ == "InMemoryGrid"


def wall_deadline(grid: Grid, seconds: float | None) -> float | None:
    """The wall-clock deadline an exchange waits for: none in a simulation (every virtual client
    answers eventually; lateness is judged on modelled time), else ``seconds``."""
    return None if is_simulated(grid) else seconds


def split_modelled_late(
    replies: dict[int, Message], deadline_seconds: float
) -> tuple[dict[int, Message], dict[int, float]]:
    """The replies a device would have delivered in time, and the modelled round seconds of
    those that would have been late (replies without a modelled time are on time)."""
    on_time: dict[int, Message] = {}
    late: dict[int, float] = {}
    for node, reply in replies.items():
        seconds = protocol.read_metrics(reply).get(MODELLED_ROUND)
        if seconds is not None and seconds > deadline_seconds:
            late[node] = seconds
        else:
            on_time[node] = reply
    return on_time, late


def modelled_stragglers(ex: Exchange, deadline_seconds: float) -> dict[int, str]:
    """Move the replies that would have missed ``deadline_seconds`` on their device out of
    ``ex.replies`` (into ``ex.missing``: recorded late, not merged); their rows' error text by
    node."""
    on_time, late = split_modelled_late(ex.replies, deadline_seconds)
    ex.replies = on_time
    ex.missing = sorted({*ex.missing, *late})
    return {
        node: f"modelled round time {seconds:.1f} s is past the {deadline_seconds:.0f} s "
        "deadline: late, not merged"
        for node, seconds in late.items()
    }
