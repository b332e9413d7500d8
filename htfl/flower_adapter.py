"""The one place where htfl tunes Flower (written for flwr 1.41); nothing else patches Flower.

Why: a stock SuperNode sleeps 3 s whenever the SuperLink had no message for it and 0.5 s
between checks for a ClientApp reply, and its SuperExec starts a fresh ClientApp process per
message. A no-op round then costs about 6 s, which corrupts the latency and idle-energy figures
a testbed exists to measure.

What: the SuperNode keeps Flower's own code path, run in ``--isolation process`` mode so that
htfl's long-lived worker (``htfl.device.worker``) serves the Runtime API in place of
SuperExec. Tuning replaces named functions of ``flwr.supernode.start_client_internal`` (the
module-level names its main loop calls), never ``time.sleep`` as such:

* ``_pull_and_store_message`` (the main loop's idle wait): the wrapper returns only once a
  message is stored, polling the SuperLink every :meth:`SuperNodePacer.current_poll_seconds`,
  or, where the run has a doorbell (:mod:`htfl.doorbell`), each time the ServerApp rings, so
  the loop's ``time.sleep(3)`` after "no message" is never reached;
* ``_push_messages`` (its reply wait): the node state it polls for the ClientApp's reply is
  wrapped so that asking for replies waits on the event the worker sets the moment its reply
  is in, so the ``time.sleep(0.5)`` between polls is never reached. Every other wait in
  Flower (e.g. ``_push_messages`` waiting 0.5 s for an object still being stored) is Flower's;
* ``pull_objects`` (object pulls, in the SuperNode and in the ServerApp's Grid): the same
  function with a short first retry (Flower's is 1 s, a race every round on loopback);
* ``get_num_workers`` (how many of a message's objects move at once; Flower: at most 2 and
  at most the core count): :data:`OBJECT_TRANSFER_CONCURRENCY`, as each is one request that
  waits on the SuperLink, not on this CPU.

Bytes on the wire come from the same call paths: the object bodies the SuperNode pulls and
pushes for each message (the agent's ``htfl_device_network_payload_bytes_total``), and the ones
the Grid pushes and pulls for each message (:data:`grid_wire`, read by the ServerApp for
``rounds.csv`` and its exporter). A message's own object (its metadata) is left out, so the
figures are the message *content*, as docs/metrics.md defines them.

If Flower is not the release this was written for, or its code no longer has these call sites,
:func:`install` and :func:`install_server` log a warning and leave Flower stock: it works,
slower, and without payload byte counts. ``tests/test_flower_adapter.py`` calls
:func:`check_compatible`, so an upgrade that changes them fails loudly there.
"""

from __future__ import annotations

import collections
import functools
import inspect
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import flwr
import httpx

from htfl import flower_internals
from htfl.doorbell import DoorbellClient
from htfl.flower_internals import FlowerInternalsMissing, iterate_object_tree

log = logging.getLogger(__name__)

#: The Flower release whose call sites this adapter patches (a version prefix).
SUPPORTED_FLWR = "1.41."
#: First retry delay when a pulled object is not fully uploaded yet (Flower's default: 1 s).
PULL_INITIAL_BACKOFF_SECONDS = 0.01
#: Objects one message moves at once (Flower: 2, and never more than the CPU cores, a rule for
#: CPU-bound work; a transfer waits on the SuperLink, so a message's objects go together).
OBJECT_TRANSFER_CONCURRENCY = 8
#: Longest wait on the worker's event before the node state is asked for replies again (a
#: reply Flower inserts itself, e.g. for a FAB that fails verification, sets no event).
REPLY_RECHECK_SECONDS = 0.5
#: How often a worker woken by the SuperNode's event still looks for a task on its own (only a
#: safety net: every stored message sets the event). A worker beside a stock SuperNode (the
#: adapter did not fit) has no event and looks every ``RuntimeWorker.fallback_poll_seconds``.
WORKER_RECHECK_SECONDS = 30.0

_SCI = flower_internals.SUPERNODE_LOOP
_GRID = flower_internals.GRID
_UTILS = flower_internals.OBJECT_TRANSFER

#: ``direction`` ("up": device to server, "down": server to device), content bytes.
WireCallback = Callable[[str, int], None]


class FlowerAdapterError(RuntimeError):
    """Flower no longer looks the way this adapter was written against."""


class SuperNodePacer:
    """How often the SuperNode polls the SuperLink, and the events it shares with the worker."""

    def __init__(
        self,
        active_poll_seconds: float = 0.05,
        idle_poll_seconds: float = 1.0,
        active_window_seconds: float = 120.0,
        superlink_host: str | None = None,
    ) -> None:
        self.active_poll_seconds = active_poll_seconds
        #: The host the SuperNode dials for the SuperLink; a run's doorbell is on it.
        self.superlink_host = superlink_host
        self._bell: DoorbellClient | None = None
        #: (address, token) of a doorbell this node could not connect to: not dialled again
        #: for that run (behind a firewall that drops, each try would cost a connect timeout)
        self._unreachable: tuple[str, str] | None = None
        self._wait_first = False
        self.idle_poll_seconds = idle_poll_seconds
        self.active_window_seconds = active_window_seconds
        #: Set when the SuperNode stored a message for the worker.
        self.message_stored = threading.Event()
        #: Set by the worker once its reply (and all its objects) are in the SuperNode.
        self.reply_pushed = threading.Event()
        #: True once :func:`install` tuned the SuperNode: ``message_stored`` is then set for
        #: every message, after its objects are stored, and the worker need not poll.
        self.event_driven = False
        #: True while the worker runs a task (from acquiring it until its reply is pushed).
        self.worker_busy = False
        self._last_message_at = -math.inf

    def note_message(self) -> None:
        self._last_message_at = time.monotonic()
        self.message_stored.set()

    def current_poll_seconds(self) -> float:
        """Short while an experiment is active, longer after ``active_window_seconds`` idle."""
        idle_for = time.monotonic() - self._last_message_at
        if idle_for < self.active_window_seconds:
            return self.active_poll_seconds
        return self.idle_poll_seconds

    def use_doorbell(self, port: int | None, token: str = "") -> None:
        """The current run's doorbell port and token (port None: the run has none; poll)."""
        if self.superlink_host is None or port is None:
            return
        bell = self._bell
        wanted = (f"{self.superlink_host}:{port}", token)
        if wanted == self._unreachable or (
            bell is not None and (bell.address, bell.token) == wanted
        ):
            return
        self._bell = DoorbellClient(self.superlink_host, port, token)
        if bell is not None:
            bell.close()

    def idle_wait(self, state: Any) -> None:
        """Between SuperLink polls that found nothing: until the doorbell rings for this node
        (or its recheck is due), or the poll interval where there is no doorbell."""
        bell = self._bell
        if bell is not None:
            try:
                bell.wait(state.get_node_id())
                return
            except httpx.HTTPError as err:  # run over, or not reachable from here: poll
                log.info("doorbell %s not reachable (%s); polling the SuperLink", bell.address, err)
                if isinstance(err, (httpx.ConnectError, httpx.ConnectTimeout)):
                    self._unreachable = (bell.address, bell.token)
                if self._bell is bell:
                    self._bell = None
                bell.close()
        time.sleep(self.current_poll_seconds())

    def replied(self, state: Any) -> None:
        """A reply of this node is in the SuperLink: tell the ServerApp, where it listens."""
        if (bell := self._bell) is not None:
            bell.replied(state.get_node_id())
            self._wait_first = True

    def wait_before_polling(self) -> bool:
        """Whether the SuperNode should wait for a ring before its next SuperLink poll: right
        after a reply went up, with a doorbell, nothing new is there yet (a ring that came
        meanwhile ends the wait at once)."""
        first, self._wait_first = self._wait_first, False
        return first and self._bell is not None

    def wait_for_reply(self) -> bool:
        """Until the worker says a reply is in (True) or a recheck is due (False)."""
        woken = self.reply_pushed.wait(REPLY_RECHECK_SECONDS)
        self.reply_pushed.clear()
        return woken


# --- compatibility ----------------------------------------------------------------------------


def _source(func: Any) -> str:
    return inspect.getsource(getattr(func, "__wrapped__", func))


def _params(func: Any) -> set[str]:
    return set(inspect.signature(getattr(func, "__wrapped__", func)).parameters)


def problems() -> list[str]:
    """Why this adapter does not fit the installed Flower (empty when it does)."""
    found: list[str] = []
    if not flwr.__version__.startswith(SUPPORTED_FLWR):
        found.append(f"flwr {flwr.__version__} installed, adapter written for {SUPPORTED_FLWR}x")
    try:
        modules = flower_internals.patch_targets()
    except FlowerInternalsMissing as err:
        return [*found, str(err)]
    sci, grid, utils = modules[_SCI], modules[_GRID], modules[_UTILS]
    loop = _source(sci.start_client_internal)
    if "run_id = _pull_and_store_message(" not in loop or "if run_id is None:" not in loop:
        found.append("SuperNode main loop no longer idles when _pull_and_store_message finds none")
    if "_push_messages(" not in loop:
        found.append("SuperNode main loop no longer calls _push_messages")
    if not {"receive", "pull_object"} <= _params(sci._pull_and_store_message):
        found.append("_pull_and_store_message no longer takes receive and pull_object")
    if not {"state", "push_object"} <= _params(sci._push_messages):
        found.append("_push_messages no longer takes state and push_object")
    if "state.get_messages_legacy(is_reply=True)" not in _source(sci._push_messages):
        found.append("_push_messages no longer waits for replies with get_messages_legacy")
    if "initial_backoff" not in _params(utils.pull_objects):
        found.append("pull_objects no longer takes initial_backoff")
    for module, func in ((sci, sci._pull_and_store_message), (grid, grid.HttpGrid.pull_messages)):
        if "pull_objects(" not in _source(func):
            found.append(f"{module.__name__} no longer pulls objects with pull_objects")
    for func in (utils.pull_objects, utils.push_object_contents_from_iterable):
        if "get_num_workers(" not in _source(func):
            found.append(f"{func.__name__} no longer sizes its thread pool with get_num_workers")
    push = _source(grid.HttpGrid._try_push_messages)
    if "get_object_tree(msg)" not in push or "push_object_fn=" not in push:
        found.append("HttpGrid no longer pushes with get_object_tree and push_objects")
    return found


def check_compatible() -> None:
    """Raise :class:`FlowerAdapterError` unless Flower has the shape this adapter patches."""
    if found := problems():
        raise FlowerAdapterError(
            "htfl's Flower adapter does not fit this Flower: " + "; ".join(found)
        )


def _fits(side: str) -> bool:
    found = problems()
    if found:
        log.warning(
            "htfl's Flower adapter does not fit flwr %s (%s); the %s runs stock Flower: "
            "slower polls, and no payload byte counts",
            flwr.__version__,
            "; ".join(found),
            side,
        )
    return not found


# --- byte counting ----------------------------------------------------------------------------


class _BodyCounter:
    """Adds up the object bodies moved for messages, leaving out each message's own object."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes = 0
        #: Ids of the messages' own objects (metadata, not content).
        self.message_ids: set[str] = set()

    def add(self, object_id: str, content: bytes) -> None:
        if object_id not in self.message_ids:
            with self._lock:
                self.bytes += len(content)

    def receiving(self, receive: Callable[[], Any]) -> Callable[[], Any]:
        def counted() -> Any:
            received = receive()
            if received is not None:
                self.message_ids.add(received[0].metadata.message_id)
            return received

        return counted

    def pulling(self, pull_object: Callable[[int, str], bytes]) -> Callable[[int, str], bytes]:
        def counted(run_id: int, object_id: str) -> bytes:
            content = pull_object(run_id, object_id)
            self.add(object_id, content)
            return content

        return counted

    def pushing(
        self, push_object: Callable[[int, str, str, bytes], None]
    ) -> Callable[[int, str, str, bytes], None]:
        def counted(run_id: int, session_id: str, object_id: str, content: bytes) -> None:
            push_object(run_id, session_id, object_id, content)
            self.add(object_id, content)

        return counted


class _ReplyWaitingState:
    """Flower's node state, except that asking for replies waits for the worker's event."""

    def __init__(self, state: Any, pacer: SuperNodePacer, counter: _BodyCounter) -> None:
        self._state = state
        self._pacer = pacer
        self._counter = counter

    def get_messages_legacy(self, **kwargs: Any) -> Any:
        if kwargs.get("is_reply") is not True:
            return self._state.get_messages_legacy(**kwargs)
        pacer = self._pacer
        # While the worker runs a task, only its event says its reply is in: looking earlier
        # could take (asking marks it retrieved) a reply whose objects are still being
        # pushed, and Flower would then sleep 0.5 s for the missing body.
        messages = [] if pacer.worker_busy else self._state.get_messages_legacy(**kwargs)
        while not messages:
            if not pacer.wait_for_reply() and pacer.worker_busy:
                continue  # a recheck while the worker is busy: its event follows
            messages = self._state.get_messages_legacy(**kwargs)
        pacer.reply_pushed.clear()  # set for the reply taken here, not for the next one
        self._counter.message_ids.update(m.metadata.message_id for m in messages)
        return messages

    def __getattr__(self, name: str) -> Any:
        return getattr(self._state, name)


class GridWire:
    """Content bytes of each message the ServerApp's Grid pushed or pulled, by message id.

    Sent: the bodies of every node of the message's object tree but its root, which is what
    a SuperNode pulls (an object shared by two messages is counted for each, as each device
    pulls it). Received: each distinct object of the reply once, as the device pushed them.
    """

    def __init__(self, keep: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._keep = keep
        self._sizes: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._trees: list[Any] = []
        self._sent: collections.OrderedDict[str, int] = collections.OrderedDict()
        #: Sizes of each pulled message's objects, until read (a reply that came too late
        #: for its exchange never is, hence the bound).
        self._pulls: collections.deque[dict[str, int]] = collections.deque(maxlen=1024)

    def sent_bytes(self, message_id: str) -> int | None:
        """Content bytes of a message this Grid pushed (once per message id)."""
        with self._lock:
            return self._sent.pop(message_id, None)

    def received_bytes(self, message_id: str) -> int | None:
        """Content bytes of a message this Grid pulled (once per message id)."""
        with self._lock:
            for sizes in self._pulls:
                if message_id in sizes:
                    self._pulls.remove(sizes)
                    return sum(n for oid, n in sizes.items() if oid != message_id)
        return None

    def _remember(self, table: collections.OrderedDict[str, int], key: str, n: int) -> None:
        table[key] = n
        table.move_to_end(key)
        while len(table) > self._keep:
            table.popitem(last=False)

    def tree_built(self, tree: Any) -> Any:
        with self._lock:
            self._trees.append(tree)
        return tree

    def push(self, push_objects: Callable[..., None], objects: dict, push_object_fn, **kw) -> None:
        with self._lock:
            trees = [t for t in self._trees if t.object_id in objects]  # this push's messages
            self._trees.clear()

        def counted(object_id: str, content: bytes) -> None:
            push_object_fn(object_id, content)
            with self._lock:
                self._remember(self._sizes, object_id, len(content))

        push_objects(objects, counted, **kw)
        with self._lock:
            for tree in trees:
                total = 0
                for node in iterate_object_tree(tree):
                    oid = node.object_id
                    if oid == tree.object_id:  # the message's own object: metadata
                        continue
                    if oid not in self._sizes:  # the SuperLink already held it: not pushed
                        self._remember(self._sizes, oid, len(objects[oid].deflate()))
                    total += self._sizes[oid]
                self._remember(self._sent, tree.object_id, total)

    def pulled(self, contents: dict[str, bytes]) -> None:
        with self._lock:
            self._pulls.append({oid: len(c) for oid, c in contents.items()})


#: What the ServerApp's Grid moved; filled once :func:`install_server` has run.
grid_wire = GridWire()


# --- installing -------------------------------------------------------------------------------


def _unwrapped(func: Any) -> Any:
    return getattr(func, "__wrapped__", func)


def install(pacer: SuperNodePacer, on_wire: WireCallback | None = None) -> bool:
    """Tune the SuperNode's named call sites; idempotent per process.

    ``on_wire(direction, n)`` is called with the content bytes of every message the
    SuperNode pulls or pushes. Returns False, after a logged warning, when Flower does not
    fit: the SuperNode then runs stock.
    """
    if not _fits("agent"):
        return False
    sci: Any = flower_internals.patch_targets()[_SCI]  # a module whose names are rebound
    pull_original = _unwrapped(sci._pull_and_store_message)
    push_original = _unwrapped(sci._push_messages)
    pull_signature = inspect.signature(pull_original)
    push_signature = inspect.signature(push_original)

    @functools.wraps(pull_original)
    def pull_and_store_message(*args: Any, **kwargs: Any) -> int | None:
        # Flower's, repeated until a message is stored: the main loop never idles 3 s.
        call = dict(pull_signature.bind(*args, **kwargs).arguments)
        receive, pull_object = call["receive"], call["pull_object"]
        if pacer.wait_before_polling():
            pacer.idle_wait(call["state"])
        while True:
            counter = _BodyCounter()
            call["receive"] = counter.receiving(receive)
            call["pull_object"] = counter.pulling(pull_object)
            run_id = pull_original(**call)
            if on_wire is not None and counter.bytes:
                on_wire("down", counter.bytes)
            if run_id is not None:
                pacer.note_message()
                return run_id
            pacer.idle_wait(call["state"])

    @functools.wraps(push_original)
    def push_messages(*args: Any, **kwargs: Any) -> None:
        # Flower's, with the reply wait on the worker's event and its pushes counted.
        call = dict(push_signature.bind(*args, **kwargs).arguments)
        counter = _BodyCounter()
        call["state"] = _ReplyWaitingState(call["state"], pacer, counter)
        call["push_object"] = counter.pushing(call["push_object"])
        try:
            push_original(**call)
        finally:
            if on_wire is not None and counter.bytes:
                on_wire("up", counter.bytes)
        pacer.replied(call["state"])

    sci._pull_and_store_message = pull_and_store_message
    sci._push_messages = push_messages
    sci.pull_objects = fast_pull_objects
    _widen_object_transfers()
    pacer.event_driven = True
    return True


def _object_workers(max_concurrent: int) -> int:
    """Flower's ``get_num_workers``, for object transfers that wait on the network."""
    return OBJECT_TRANSFER_CONCURRENCY


def _widen_object_transfers() -> None:
    """Move a message's objects together rather than two at a time (each object is one
    request; with two at a time a 4-object message costs two round trips to the SuperLink)."""
    utils: Any = flower_internals.patch_targets()[_UTILS]
    utils.get_num_workers = _object_workers


def install_server(wire: GridWire | None = None) -> bool:
    """Tune the ServerApp Grid's object pulls and count what it moves into ``wire``.

    Returns False, after a logged warning, when Flower does not fit (the Grid runs stock).
    """
    if not _fits("ServerApp"):
        return False
    wire = wire or grid_wire
    modules: dict[str, Any] = flower_internals.patch_targets()  # modules whose names are rebound
    grid, utils = modules[_GRID], modules[_UTILS]
    tree_original = _unwrapped(grid.get_object_tree)

    @functools.wraps(tree_original)
    def get_object_tree(obj: Any) -> Any:
        return wire.tree_built(tree_original(obj))

    def push_objects(objects: dict, push_object_fn: Callable, **kwargs: Any) -> None:
        wire.push(utils.push_objects, objects, push_object_fn, **kwargs)

    def pull_objects(object_ids: list[str], pull_object_fn: Callable, **kwargs: Any) -> dict:
        contents = fast_pull_objects(object_ids, pull_object_fn, **kwargs)
        wire.pulled(contents)
        return contents

    grid.get_object_tree = get_object_tree
    grid.push_objects = push_objects
    grid.pull_objects = pull_objects
    _widen_object_transfers()
    return True


def fast_pull_objects(*args: Any, **kwargs: Any) -> dict[str, bytes]:
    """Flower's ``pull_objects`` with a short first retry."""
    kwargs.setdefault("initial_backoff", PULL_INITIAL_BACKOFF_SECONDS)
    return flower_internals.patch_targets()[_UTILS].pull_objects(*args, **kwargs)


def run_supernode(argv: list[str]) -> None:
    """Run Flower's own ``flower-supernode`` entry point in this process (blocks)."""
    import sys

    saved = sys.argv
    sys.argv = ["flower-supernode", *argv]
    try:
        flower_internals.flower_supernode()
    finally:
        sys.argv = saved
