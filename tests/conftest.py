"""Suite-wide rules: in CI a skipped test is a failure (CI provides every dependency); and the
fixtures that several test packages share."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    """True where the CI entry point (.ci/run) runs us: ``CI`` set to anything but false/0."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not in_ci():
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        names = ", ".join(getattr(r, "nodeid", "?") for r in skipped[:10])
        reporter.write_line(f"\nCI forbids skipped tests; skipped: {names}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: the models these tests train are tiny, and on a busy 2-core machine a
    second thread only spins (use with ``pytest.mark.usefixtures``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
