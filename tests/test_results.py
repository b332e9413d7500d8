"""What `htfl run` records when it is interrupted and the ServerApp could not."""

from __future__ import annotations

import json
from pathlib import Path

from htfl.workstation.server.results import SUMMARY_FILE, record_interrupted, write_json


def test_an_interrupted_run_without_a_summary_gets_one_that_says_who_wrote_it(
    tmp_path: Path,
) -> None:
    record_interrupted(tmp_path, 7)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert summary["status"] == "stopped" and summary["run_id"] == 7
    assert "written by htfl run" in summary["error"]


def test_the_serverapps_own_summary_is_kept(tmp_path: Path) -> None:
    write_json(tmp_path / SUMMARY_FILE, {"status": "stopped", "error": "the ServerApp was stopped"})
    record_interrupted(tmp_path, 7)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert summary == {"status": "stopped", "error": "the ServerApp was stopped"}
    assert [p.name for p in tmp_path.iterdir()] == [SUMMARY_FILE]  # no temporary file left


def test_nothing_is_written_where_no_results_directory_was_made(tmp_path: Path) -> None:
    record_interrupted(tmp_path / "never-made", 7)
    assert not (tmp_path / "never-made").exists()
