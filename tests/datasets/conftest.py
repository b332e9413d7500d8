"""Every dataset test gets its own data directory: nothing is read from or written to ~."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "htfl-data"
    monkeypatch.setenv("HTFL_DATA_DIR", str(root))
    return root


def tree(path: Path) -> list[str]:
    """Every file and directory under ``path`` (relative, sorted); [] if it does not exist."""
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def settled(read: Callable[[], object], expected: object, timeout: float = 5.0) -> object:
    """``read()`` once it equals ``expected`` or ``timeout`` has passed (then its last value).

    For counts a server's handler thread updates after the client may already have every byte.
    """
    end = time.monotonic() + timeout
    value = read()
    while value != expected and time.monotonic() < end:
        time.sleep(0.01)
        value = read()
    return value
