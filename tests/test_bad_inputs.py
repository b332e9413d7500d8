"""The table of bad inputs to `htfl run` (``benchmarks.faults.BAD_INPUTS``): each is refused
with exit 2 and a message naming the file, key, option or directory, before anything starts
and without writing anything. Run in this process (one torch import for all cases); the
fault benchmark runs the same table through fresh processes."""

from __future__ import annotations

import signal
import traceback
from pathlib import Path

import psutil
import pytest

from benchmarks.faults import BAD_INPUTS, BadInput, check_bad_input
from htfl.cli import main


@pytest.fixture
def in_process(capfd):
    """``htfl ARGV`` in this process: its exit status and stderr (a traceback included, as a
    user would see it)."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def runner(argv: list[str]) -> tuple[int, str]:
        capfd.readouterr()
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's own usage errors
            code = exit_.code if isinstance(exit_.code, int) else 1
        except Exception:
            code, _ = 1, traceback.print_exc()
        return code, capfd.readouterr().err

    yield runner
    for sig, handler in handlers.items():  # htfl run takes SIGINT/SIGTERM over
        signal.signal(sig, handler)


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.name for c in BAD_INPUTS])
def test_a_bad_input_is_refused_before_anything_starts(
    case: BadInput, tmp_path: Path, in_process
) -> None:
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    assert check_bad_input(case, tmp_path / "case", in_process) == []
    started = {p.pid for p in psutil.Process().children(recursive=True)} - children
    assert not started, "a bad input started processes"


def test_the_table_covers_every_kind_of_bad_input() -> None:
    names = {c.name for c in BAD_INPUTS}
    assert len(names) == len(BAD_INPUTS) >= 20
    options = {o for c in BAD_INPUTS for o in c.options if o.startswith("--")}
    assert {"--results", "--local-fleet", "--resume"} <= options
