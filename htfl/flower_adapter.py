"""The one place where htfl tunes Flower (flwr 1.41); nothing else patches Flower.

Why: a stock SuperNode sleeps 3 s whenever the SuperLink had no message for it and 0.5 s
between checks for a ClientApp reply, and its SuperExec starts a fresh ClientApp process per
message. A no-op round then costs about 6 s, which corrupts the latency and idle-energy figures
a testbed exists to measure.

What: the SuperNode keeps Flower's own code path, run in ``--isolation process`` mode so that
htfl's long-lived worker (``htfl.device.worker``) serves the Runtime API in place of
SuperExec. Two module-level names in ``flwr.supernode.start_client_internal`` are replaced:

* ``time`` by a :class:`SuperNodePacer`, which turns the 3 s idle sleep into a short poll while
  an experiment is active (a longer one after ``active_window`` seconds without messages), and
  the 0.5 s reply wait into a wait on an event the worker sets the moment its reply is pushed;
* ``_pull_and_store_message`` by a wrapper that wakes the worker as soon as a message is stored.

Both the SuperNode and the ServerApp's Grid pull a message's objects with Flower's
``pull_objects``, whose first retry waits 1 s when an object is still being uploaded (a race
every round on loopback). :func:`install` and :func:`install_server` bind the module-level
``pull_objects`` name in ``start_client_internal`` and ``http_grid`` to the same function
with a short initial backoff.

:func:`check_compatible` verifies the exact source patterns this relies on; the test
``tests/test_flower_adapter.py`` calls it, so a Flower upgrade that changes them fails loudly.
"""

from __future__ import annotations

import inspect
import math
import threading
import time as _time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import flwr
import flwr.superlink.grid.http_grid as _grid
import flwr.supernode.start_client_internal as _sci
from flwr.supercore.inflatable import inflatable_utils as _inflatable

SUPPORTED_FLWR = "1.41."
_IDLE_SLEEP_SECONDS = 3
_REPLY_WAIT_SECONDS = 0.5
#: First retry delay when a pulled object is not fully uploaded yet (Flower's default: 1 s).
PULL_INITIAL_BACKOFF_SECONDS = 0.01


class FlowerAdapterError(RuntimeError):
    """Flower no longer looks the way this adapter was written against."""


class SuperNodePacer:
    """Stands in for the ``time`` module inside Flower's SuperNode main loop."""

    def __init__(
        self,
        active_poll_seconds: float = 0.05,
        idle_poll_seconds: float = 1.0,
        active_window_seconds: float = 120.0,
    ) -> None:
        self.active_poll_seconds = active_poll_seconds
        self.idle_poll_seconds = idle_poll_seconds
        self.active_window_seconds = active_window_seconds
        #: Set when the SuperNode stored a message for the worker.
        self.message_stored = threading.Event()
        #: Set by the worker once its reply (and all its objects) are in the SuperNode.
        self.reply_pushed = threading.Event()
        self._last_message_at = -math.inf

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)

    def note_message(self) -> None:
        self._last_message_at = _time.monotonic()
        self.message_stored.set()

    def current_poll_seconds(self) -> float:
        idle_for = _time.monotonic() - self._last_message_at
        if idle_for < self.active_window_seconds:
            return self.active_poll_seconds
        return self.idle_poll_seconds

    def sleep(self, seconds: float) -> None:
        if seconds == _IDLE_SLEEP_SECONDS:
            _time.sleep(self.current_poll_seconds())
        elif seconds == _REPLY_WAIT_SECONDS:
            self.reply_pushed.wait(seconds)
            self.reply_pushed.clear()
        else:
            _time.sleep(seconds)


def check_compatible() -> None:
    """Raise :class:`FlowerAdapterError` unless Flower has the shape this adapter patches."""
    problems: list[str] = []
    if not flwr.__version__.startswith(SUPPORTED_FLWR):
        problems.append(f"flwr {flwr.__version__} installed, adapter written for {SUPPORTED_FLWR}x")
    if not isinstance(getattr(_sci, "time", None), ModuleType | SuperNodePacer):
        problems.append("start_client_internal no longer imports the time module")
    main_loop = inspect.getsource(_sci.start_client_internal)
    if f"time.sleep({_IDLE_SLEEP_SECONDS})" not in main_loop:
        problems.append("SuperNode main loop no longer idles with time.sleep(3)")
    if "_pull_and_store_message(" not in main_loop:
        problems.append("SuperNode main loop no longer calls _pull_and_store_message")
    if f"time.sleep({_REPLY_WAIT_SECONDS})" not in inspect.getsource(_sci._push_messages):
        problems.append("_push_messages no longer waits for replies with time.sleep(0.5)")
    if "initial_backoff" not in inspect.signature(_inflatable.pull_objects).parameters:
        problems.append("pull_objects no longer takes initial_backoff")
    pullers = ((_sci, _sci._pull_and_store_message), (_grid, _grid.HttpGrid.pull_messages))
    for module, func in pullers:
        source = inspect.getsource(getattr(func, "__wrapped__", func))
        if "pull_objects(" not in source or not hasattr(module, "pull_objects"):
            problems.append(f"{module.__name__} no longer pulls objects with pull_objects")
    if problems:
        raise FlowerAdapterError(
            "htfl's SuperNode adapter does not fit this Flower: " + "; ".join(problems)
        )


def install(pacer: SuperNodePacer) -> None:
    """Route the SuperNode's waits through ``pacer``; idempotent per process."""
    check_compatible()
    original: Callable[..., int | None] = getattr(
        _sci._pull_and_store_message, "__wrapped__", _sci._pull_and_store_message
    )

    def pull_and_store_message(*args: Any, **kwargs: Any) -> int | None:
        run_id = original(*args, **kwargs)
        if run_id is not None:
            pacer.note_message()
        return run_id

    pull_and_store_message.__wrapped__ = original  # type: ignore[attr-defined]
    _sci.time = pacer  # type: ignore[assignment]
    _sci._pull_and_store_message = pull_and_store_message
    _sci.pull_objects = fast_pull_objects


def install_server() -> None:
    """Shorten the ServerApp Grid's first retry when a reply is still being uploaded."""
    check_compatible()
    _grid.pull_objects = fast_pull_objects


def fast_pull_objects(*args: Any, **kwargs: Any) -> dict[str, bytes]:
    kwargs.setdefault("initial_backoff", PULL_INITIAL_BACKOFF_SECONDS)
    return _inflatable.pull_objects(*args, **kwargs)


def run_supernode(argv: list[str]) -> None:
    """Run Flower's own ``flower-supernode`` entry point in this process (blocks)."""
    import sys

    from flwr.supernode.cli import flower_supernode

    saved = sys.argv
    sys.argv = ["flower-supernode", *argv]
    try:
        flower_supernode()
    finally:
        sys.argv = saved
