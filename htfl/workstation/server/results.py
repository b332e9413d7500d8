"""``results/<experiment>/``: the record that reports are made from.

Written as the run goes (append-only, flushed per round), so an interrupted experiment keeps
every round it finished. Prometheus is only the live view.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import htfl

ROWS_FILE = "rounds.csv"
PROGRESS_FILE = "progress.jsonl"
SUMMARY_FILE = "summary.json"


@dataclass
class ClientRoundRow:
    """One client in one round. Empty numbers mean 'not measured this round'."""

    round: int
    node_id: int
    device: str
    device_class: str
    arch: str
    client_index: int
    status: str  # ok | set_aside | late | error | missing
    round_trip_seconds: float | None = None
    train_seconds: float | None = None
    evaluate_seconds: float | None = None
    serialise_seconds: float | None = None
    deserialise_seconds: float | None = None
    handle_seconds: float | None = None  # on the device, from message in to reply out
    download_seconds: float | None = None  # SuperNode -> worker on the device
    idle_seconds: float | None = None  # device idle before this round's message
    bytes_down: int | None = None  # training message content, as sent
    bytes_up: int | None = None  # training reply content, as received
    eval_bytes_down: int | None = None
    eval_bytes_up: int | None = None
    energy_joules: float | None = None  # device energy while handling this round's messages
    idle_energy_joules: float | None = None  # device energy while idle before the round
    energy_partial: bool | None = None  # the meter had gaps: energy is a lower bound
    train_loss: float | None = None
    num_train: int | None = None
    test_accuracy: float | None = None
    test_loss: float | None = None
    num_test: int | None = None
    round_started: float | None = None
    error: str = ""


ROW_FIELDS = [f.name for f in fields(ClientRoundRow)]


def code_version() -> dict[str, str]:
    """htfl's version and, when run from a checkout, the git commit and whether it was dirty."""
    out = {"htfl": htfl.__version__}
    root = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        out.update(git_commit=commit, git_dirty=str(bool(dirty)).lower())
    except (OSError, subprocess.SubprocessError):
        pass
    return out


class ResultsStore:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._rows = open(self.dir / ROWS_FILE, "w", newline="")  # noqa: SIM115 - long-lived
        self._writer = csv.DictWriter(self._rows, fieldnames=ROW_FIELDS)
        self._writer.writeheader()
        self._progress = open(self.dir / PROGRESS_FILE, "w")  # noqa: SIM115 - long-lived

    def write_json(self, name: str, obj: Any) -> None:
        write_json(self.dir / name, obj)

    def add_rows(self, rows: list[ClientRoundRow]) -> None:
        for row in rows:
            self._writer.writerow(asdict(row))
        self._rows.flush()

    def progress(self, **event: Any) -> None:
        event.setdefault("time", time.time())
        self._progress.write(json.dumps(event, default=str) + "\n")
        self._progress.flush()

    def close(self) -> None:
        self._rows.close()
        self._progress.close()


def read_rows(directory: str | Path) -> list[dict[str, str]]:
    with open(Path(directory) / ROWS_FILE, newline="") as fh:
        return list(csv.DictReader(fh))


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def record_interrupted(directory: Path, run_id: int | None) -> None:
    """The summary of a run stopped from the command line, unless the ServerApp wrote one.

    The ServerApp records its own end when it is stopped, but Flower may kill it before it
    can (the SuperLink gives its SuperExec one second); the record must still say how the run
    ended, and that the ServerApp did not write it.
    """
    path = directory / SUMMARY_FILE
    if directory.is_dir() and not path.exists():
        write_json(
            path,
            {
                "status": "stopped",
                "run_id": run_id,
                "finished": time.time(),
                "error": "interrupted from the command line; the ServerApp was stopped before "
                "it could record its end (written by htfl run)",
            },
        )
