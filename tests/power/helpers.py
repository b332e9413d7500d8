"""Small test helpers."""

from __future__ import annotations

import time
from collections.abc import Callable

from htfl.device.power.meter import FrameError, Meter


def wait_for(condition: Callable[[], bool], timeout: float = 5.0, step: float = 0.005) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


class ScriptedMeter(Meter):
    """Returns scripted samples/exceptions in order, then repeats the last sample's value."""

    driver = "scripted"

    def __init__(self, script, **kwargs):
        super().__init__(**kwargs)
        self.script = list(script)
        self.opens = 0
        self.exhausted = 0

    def open(self):
        self.opens += 1
        self._is_open = True

    def close(self):
        self._is_open = False

    def read(self):
        if not self.script:
            self.exhausted += 1
            time.sleep(0.01)
            raise FrameError("script exhausted")
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            if isinstance(item, FrameError):
                self.frame_errors += 1
            raise item
        return item
