"""Flower's own SuperNode pull and push steps, run in this process with htfl's adapter installed.

Why: payload bytes are counted where Flower moves a message's objects (``htfl.flower_adapter``).
Tests and the payload benchmark size a message by moving it through those same steps, against
Flower's in-memory node state and object store, with the SuperLink's end of the connection
recorded, rather than by a second, hand-written count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace

from flwr.app import Message
from flwr.app.message import remove_content_from_message
from flwr.common.serde import message_to_proto
from flwr.proto.message_pb2 import PullObjectResponse, PushObjectResponse
from flwr.proto.node_pb2 import Node
from flwr.proto.runtime_pb2 import PullAppMessagesResponse, PushAppMessagesResponse
from flwr.supercore.inflatable.inflatable_object import (
    get_all_nested_objects,
    get_object_tree,
    iterate_object_tree,
    no_object_id_recompute,
)
from flwr.supercore.object_store.in_memory_object_store import InMemoryObjectStore
from flwr.supercore.run import Run
from flwr.supernode.nodestate.in_memory_nodestate import InMemoryNodeState

from htfl import flower_adapter, flower_internals

SUPERNODE = "flwr.supernode.start_client_internal"
GRID = "flwr.superlink.grid.http_grid"
TUNED = ("_pull_and_store_message", "_push_messages", "pull_objects")
GRID_TUNED = ("get_object_tree", "push_objects", "pull_objects")


@dataclass
class Moved:
    """What one message's trip through the SuperNode left behind."""

    counted: int = 0  # content bytes the adapter reported
    bodies: list[tuple[str, bytes]] = field(default_factory=list)  # (object id, body) sent

    def body_bytes(self, leave_out: str) -> int:
        """Bytes of the bodies that crossed, but the message's own object."""
        return sum(len(body) for oid, body in self.bodies if oid != leave_out)


@contextmanager
def tuned_supernode(
    on_wire: Callable[[str, int], None], pacer: flower_adapter.SuperNodePacer | None = None
) -> Iterator[ModuleType]:
    """Flower's SuperNode module with the adapter installed; restored afterwards."""
    sci = flower_internals.patch_targets()[SUPERNODE]
    saved = {name: getattr(sci, name) for name in TUNED}
    try:
        assert flower_adapter.install(pacer or flower_adapter.SuperNodePacer(), on_wire)
        yield sci
    finally:
        for name, value in saved.items():
            setattr(sci, name, value)


def push_reply(reply: Message) -> Moved:
    """Push ``reply`` as a SuperNode does after its ClientApp answered (to a fresh SuperLink)."""
    moved = Moved()
    store = InMemoryObjectStore()
    state = InMemoryNodeState(store)

    def on_wire(direction: str, n: int) -> None:
        assert direction == "up"
        moved.counted += n

    def send(message: Message, tree, runtime: float) -> tuple[set[str], str]:
        return {t.object_id for t in iterate_object_tree(tree)}, "session"  # wants them all

    def push_object(run_id: int, session_id: str, object_id: str, content: bytes) -> None:
        moved.bodies.append((object_id, content))

    with tuned_supernode(on_wire) as sci:
        sci._insert_message(reply, state, store)
        sci._push_messages(state=state, object_store=store, send=send, push_object=push_object)
    return moved


def pull_message(message: Message, node_id: int) -> Moved:
    """Pull ``message`` from a SuperLink that holds it, as the SuperNode ``node_id`` does."""
    moved = Moved()
    store = InMemoryObjectStore()
    state = InMemoryNodeState(store)
    state.set_node_id(node_id)
    state.store_run(Run.create_empty(message.metadata.run_id))  # known run: no FAB fetch
    bodies = {oid: obj.deflate() for oid, obj in get_all_nested_objects(message).items()}
    queue = [(message, get_object_tree(message))]

    def receive() -> tuple[Message, object]:
        if not queue:  # the adapter's wrapper polls until a message is stored
            raise RuntimeError("the SuperNode asked for a second message")
        return queue.pop()

    def on_wire(direction: str, n: int) -> None:
        assert direction == "down"
        moved.counted += n

    def pull_object(run_id: int, object_id: str) -> bytes:
        moved.bodies.append((object_id, bodies[object_id]))
        return bodies[object_id]

    with tuned_supernode(on_wire) as sci:
        sci._pull_and_store_message(
            state=state,
            object_store=store,
            node_config={},
            receive=receive,
            get_run=None,
            get_fab=None,
            pull_object=pull_object,
            confirm_message_received=lambda run_id, message_id: None,
            trusted_entities=None,
        )
    return moved


@contextmanager
def tuned_grid(wire: flower_adapter.GridWire) -> Iterator[ModuleType]:
    """Flower's Grid module with the adapter installed, counting into ``wire``; restored."""
    grid = flower_internals.patch_targets()[GRID]
    saved = {name: getattr(grid, name) for name in GRID_TUNED}
    try:
        assert flower_adapter.install_server(wire)
        yield grid
    finally:
        for name, value in saved.items():
            setattr(grid, name, value)


class RecordingSuperLink:
    """The SuperLink's end of the Grid's Runtime API: keeps what is pushed, serves pulls."""

    def __init__(self, replies: list[Message] = ()) -> None:  # type: ignore[assignment]
        self.objects: dict[str, bytes] = {}
        self.pushed: list[tuple[str, bytes]] = []
        self.replies = list(replies)
        for reply in self.replies:
            with no_object_id_recompute():  # as the SuperNode stores a reply
                reply.metadata.__dict__["_message_id"] = reply.object_id
            for oid, obj in get_all_nested_objects(reply).items():
                self.objects[oid] = obj.deflate()

    def PushMessages(self, request) -> PushAppMessagesResponse:  # noqa: N802 (Flower's name)
        ids = [t.object_id for t in request.message_object_trees]
        wanted = {
            t.object_id for tree in request.message_object_trees for t in iterate_object_tree(tree)
        }
        return PushAppMessagesResponse(
            message_ids=ids, objects_to_push=sorted(wanted - set(self.objects)), session_id="s"
        )

    def PushObject(self, request) -> PushObjectResponse:  # noqa: N802
        self.pushed.append((request.object_id, request.object_content))
        self.objects[request.object_id] = request.object_content
        return PushObjectResponse(stored=True)

    def PullMessages(self, request) -> PullAppMessagesResponse:  # noqa: N802
        wanted = [r for r in self.replies if r.metadata.message_id in request.message_ids]
        return PullAppMessagesResponse(
            messages_list=[message_to_proto(remove_content_from_message(r)) for r in wanted],
            message_object_trees=[get_object_tree(r) for r in wanted],
        )

    def PullObject(self, request) -> PullObjectResponse:  # noqa: N802
        return PullObjectResponse(
            object_found=True, object_available=True, object_content=self.objects[request.object_id]
        )

    def ConfirmMessageReceived(self, request) -> None:  # noqa: N802
        return None


def grid(superlink: RecordingSuperLink, run_id: int) -> SimpleNamespace:
    """What Flower's ``HttpGrid`` methods read from ``self``, backed by ``superlink``."""
    return SimpleNamespace(
        _runtime_client=superlink,
        node=Node(node_id=1),
        _run=SimpleNamespace(run_id=run_id),
        _check_message=lambda message: None,
    )


def grid_push(
    messages: list[Message], superlink: RecordingSuperLink | None = None
) -> list[int | None]:
    """Push ``messages`` with Flower's ``HttpGrid.push_messages``; the Grid's count of each."""
    superlink = superlink or RecordingSuperLink()
    wire = flower_adapter.GridWire()
    with tuned_grid(wire) as module:
        self = grid(superlink, messages[0].metadata.run_id)
        self._try_push_messages = lambda run_id, msgs: module.HttpGrid._try_push_messages(
            self, run_id, msgs
        )
        ids = list(module.HttpGrid.push_messages(self, messages))
    return [wire.sent_bytes(mid) for mid in ids]


def grid_pull(reply: Message) -> int | None:
    """Pull ``reply`` with Flower's ``HttpGrid.pull_messages``; the Grid's count of it."""
    wire = flower_adapter.GridWire()
    with tuned_grid(wire) as module:
        self = grid(RecordingSuperLink([reply]), reply.metadata.run_id)
        (pulled,) = module.HttpGrid.pull_messages(self, [reply.metadata.message_id])
    return wire.received_bytes(pulled.metadata.message_id)
