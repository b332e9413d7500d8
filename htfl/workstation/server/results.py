"""``results/<experiment>/``: the record that reports are made from.

Written as the run goes (append-only, flushed per round), so an interrupted experiment keeps
every round it finished. Prometheus is only the live view.
"""

from __future__ import annotations

import contextlib
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
    #: times, transfer and energy modelled from the device class profile (a simulated client,
    #: ``htfl run --simulate``), not measured on a device
    modelled: bool | None = None
    #: which meter priced energy_joules, and what it measures (wall, board, module,
    #: cpu-package, battery): compare energy only between rows of the same scope
    energy_meter: str = ""
    energy_scope: str = ""
    #: the intervals priced, server clock, "start:end;..." (train, evaluate) and the idle one
    #: before the train message: htfl power energy recomputes the energy from the traces
    energy_spans: str = ""
    idle_span: str = ""
    power_trace_bytes: int | None = None  # power samples the replies carried (in bytes_up)


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
    """``resume_after``: continue a results directory whose rounds up to this one are kept;
    rows of later rounds (written before a crash, but not checkpointed) are dropped, so a
    resumed run neither loses nor duplicates a row."""

    def __init__(self, directory: str | Path, resume_after: int | None = None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        if resume_after is not None:
            keep_rows_up_to(self.dir, resume_after)
        mode = "w" if resume_after is None else "a"
        self._rows = open(self.dir / ROWS_FILE, mode, newline="")  # noqa: SIM115 - long-lived
        self._writer = csv.DictWriter(self._rows, fieldnames=ROW_FIELDS)
        if resume_after is None:
            self._writer.writeheader()
        self._progress = open(self.dir / PROGRESS_FILE, mode)  # noqa: SIM115 - long-lived

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


def keep_rows_up_to(directory: Path, last_round: int) -> None:
    """Rewrite ``rounds.csv`` (atomically) with the rows of rounds ``<= last_round`` only."""
    path = directory / ROWS_FILE
    rows = read_rows(directory) if path.exists() else []
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=ROW_FIELDS)
        writer.writeheader()
        writer.writerows(r for r in rows if int(r["round"]) <= last_round)
    os.replace(tmp, path)


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


def last_progress_round(directory: Path) -> int:
    """The last round ``progress.jsonl`` records as completed (0: none)."""
    last = 0
    try:
        lines = (directory / PROGRESS_FILE).read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:  # a line cut short by a kill
            continue
        if event.get("event") == "round":
            last = int(event["round"])
    return last


def record_ended(directory: Path, run_id: int | None, end: dict[str, Any]) -> None:
    """The summary of a run that ended without the ServerApp recording it (killed, lost
    SuperLink, timeout): what happened, and the last round completed, written by htfl run."""
    path = directory / SUMMARY_FILE
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("status") not in (None, "running"):
            return  # the ServerApp's own record
    if directory.is_dir():
        write_json(
            path,
            {
                "status": end.get("status", "failed"),
                "cause": end.get("cause", ""),
                "run_id": run_id,
                "finished": time.time(),
                "last_completed_round": last_progress_round(directory),
                "error": f"{end.get('error', '')} (written by htfl run: the ServerApp did not "
                "record its end)",
            },
        )
