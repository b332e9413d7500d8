from __future__ import annotations

import shutil

import pytest

from .trees import PLATFORM_TREES, write_tree


@pytest.fixture
def make_tree(tmp_path):
    """``make_tree("rk3588")`` writes that platform's fixture tree and returns its root."""

    def _make(name: str, subdir: str | None = None):
        return write_tree(tmp_path / (subdir or name), PLATFORM_TREES[name]())

    return _make


@pytest.fixture
def promtool():
    """Path of promtool; FAILS when it is missing and CI is set, skips otherwise."""
    import os

    path = shutil.which("promtool")
    if path is None:
        message = "promtool not found: apt-get install -y prometheus"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this is a failure, not a skip)")
        pytest.skip(message)
    return path
