"""Send one message to each of several nodes and collect replies until a deadline.

Flower's ``Grid.send_and_receive`` polls every 3 s and waits for every reply; a testbed needs a
short poll (round latency is a measured quantity) and a deadline after which late devices are
recorded rather than waited for. Only the public Grid API is used; the bytes each message put
on the wire come from what the Grid moved (``flower_adapter.grid_wire``, None where Flower
runs stock).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from flwr.app import Message
from flwr.serverapp import Grid

from htfl.flower_adapter import grid_wire
from htfl.workstation.server import doorbell

#: With a doorbell, the longest wait for an agent's reply notice before the SuperLink is asked
#: anyway (a notice that never came: an agent without the doorbell, a lost request).
REPLY_RECHECK_SECONDS = 0.5


@dataclass
class Exchange:
    """What came back from one round of messages."""

    replies: dict[int, Message] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)
    sent_at: float = 0.0
    received_at: dict[int, float] = field(default_factory=dict)
    #: The message id still waiting for a reply, per node that missed the deadline (a late
    #: reply can still be pulled with it).
    pending: dict[int, str] = field(default_factory=dict)
    #: Content bytes of the message sent to each node, as the Grid pushed it.
    bytes_sent: dict[int, int | None] = field(default_factory=dict)
    #: Content bytes of each node's reply, as the Grid pulled it.
    bytes_received: dict[int, int | None] = field(default_factory=dict)


def exchange(
    grid: Grid,
    messages: list[Message],
    deadline_seconds: float | None,
    min_replies: int | None = None,
    poll_seconds: float = 0.02,
    grace_factor: float = 3.0,
) -> Exchange:
    """Push ``messages``; pull replies until all are in, or the deadline passes.

    Past the deadline the wait goes on only while fewer than ``min_replies`` answered, and
    never beyond ``grace_factor`` deadlines. Without a deadline it lasts until all answered.
    """
    result = Exchange(sent_at=time.time())
    ids = list(grid.push_messages(messages))
    node_of = {mid: msg.metadata.dst_node_id for mid, msg in zip(ids, messages, strict=True)}
    for mid, msg in zip(ids, messages, strict=True):
        result.bytes_sent[msg.metadata.dst_node_id] = grid_wire.sent_bytes(mid) if mid else None
        if not mid:  # the SuperLink stores no message for a node that left
            result.errors[msg.metadata.dst_node_id] = (
                "the SuperLink refused the message: the node is no longer connected"
            )
    pending = {mid for mid in ids if mid}
    bell = doorbell.current
    if bell is not None:  # the messages are in the SuperLink: their nodes may ask for them now
        bell.ring(node_of[mid] for mid in pending)
    end = None if deadline_seconds is None else time.monotonic() + deadline_seconds
    while pending:
        if bell is not None:
            bell.replies.clear()  # a notice from here on means: pull again
        for reply in grid.pull_messages(list(pending)):
            mid = reply.metadata.reply_to_message_id
            if mid not in pending:
                continue
            pending.discard(mid)
            node = node_of[mid]
            result.received_at[node] = time.time()
            result.bytes_received[node] = grid_wire.received_bytes(reply.metadata.message_id)
            if reply.has_error():
                result.errors[node] = f"{reply.error.code}: {reply.error.reason}"
            else:
                result.replies[node] = reply
        if not pending:
            break
        if end is not None and time.monotonic() >= end:
            answered = len(result.replies)
            over = time.monotonic() - end
            if min_replies is None or answered >= min_replies:
                break
            if over >= (grace_factor - 1) * (deadline_seconds or 0):
                break
        if bell is None:
            time.sleep(poll_seconds)
        else:  # until an agent says its reply is in (bounded, and never past the deadline)
            left = REPLY_RECHECK_SECONDS if end is None else end - time.monotonic()
            bell.replies.wait(min(REPLY_RECHECK_SECONDS, max(left, poll_seconds)))
    result.missing = sorted(node_of[mid] for mid in pending)
    result.pending = {node_of[mid]: mid for mid in pending}
    return result
