"""Every fault of ``python -m benchmarks.faults`` at toy size, on a real local fleet (`htfl run
--local-fleet`: a real SuperLink, real agents): the run completes every round (resumed where
the fault ends it), every result row is written once, and no process the runs started is left.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import faults
from benchmarks.faults import Bench, Outcome

pytestmark = [pytest.mark.integration, pytest.mark.benchmark]


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return Bench(tmp_path, rounds=3, deadline=20.0, freeze=30.0)


def _complete(outcome: Outcome) -> None:
    assert outcome.rounds_completed == outcome.rounds, outcome
    assert outcome.rows_written == outcome.rows_expected, outcome
    assert outcome.rows_duplicated == 0, outcome
    assert outcome.leftover_processes == 0, outcome


def test_device_killed_through_the_benchmark_command(capsys: pytest.CaptureFixture[str]) -> None:
    """The smoke test of ``python -m benchmarks.faults`` itself: one fault, its table row."""
    assert faults.main(["--faults", "device-killed", "--rounds", "3", "--deadline", "20"]) == 0
    row = [cell.strip() for cell in capsys.readouterr().out.strip().splitlines()[-1].split("|")]
    assert row[0] == "device killed"
    assert row[1] == "3/3" and row[2] == "6/6/0" and row[4] == "0" and row[5] == "0", row


def test_device_frozen(bench: Bench) -> None:
    outcome = bench.device_frozen()
    _complete(outcome)
    assert outcome.exits == [0]


def test_serverapp_killed_then_resumed(bench: Bench) -> None:
    outcome = bench.serverapp_killed()
    _complete(outcome)
    assert outcome.exits == [1, 0]  # the first run ends (failed), the resumed one finishes
    assert "resumed after round" in outcome.note and "None" not in outcome.note


def test_superlink_killed_then_resumed(bench: Bench) -> None:
    outcome = bench.superlink_killed()
    _complete(outcome)
    assert outcome.exits == [1, 0]


def test_agent_restarted(bench: Bench) -> None:
    outcome = bench.agent_restarted()
    _complete(outcome)
    assert outcome.note.startswith("rejoined with its model of round"), outcome.note
    assert not outcome.note.endswith("round 0")


def test_uninvited_node(bench: Bench) -> None:
    outcome = bench.uninvited_node()
    _complete(outcome)
    assert outcome.note == "ignored: duplicate device name"


def test_link_cut(tmp_path: Path) -> None:
    """The device's link is cut (its relay resets and refuses its connections) for as long as
    one deadline: it misses the round(s) of the cut, its rows say so, and it comes back with
    its own model (same process, no new setup) and answers the rounds after."""
    outcome = Bench(tmp_path, rounds=3, deadline=20.0, freeze=30.0, cut=20.0).link_cut()
    _complete(outcome)
    assert outcome.exits == [0]
    assert "missed rounds [" in outcome.note and "back in round" in outcome.note, outcome.note
    assert "set up again" not in outcome.note, outcome.note
