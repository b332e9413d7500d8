"""Reading one ``results/<experiment>/`` directory for a report.

Only the columns a report draws are kept, by name (a results dir may carry more columns, or
fewer, than this htfl writes), as ``rounds x devices`` float grids: 1,000 rounds x 50 devices
is 50,000 rows and loads in a fraction of a second. A run that failed or was stopped is read
as far as it got (a last line cut short is dropped and said so); a missing or corrupt file is
a :class:`ReportError` naming the file and the line.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from htfl.workstation.server.results import PROGRESS_FILE, ROWS_FILE, SUMMARY_FILE

#: Columns a report needs; the run is refused without them.
REQUIRED = ("round", "device", "device_class", "status")
#: Numeric columns a report draws; a column the file lacks reads as "not measured".
NUMERIC = (
    "round_trip_seconds",
    "train_seconds",
    "evaluate_seconds",
    "serialise_seconds",
    "deserialise_seconds",
    "handle_seconds",
    "download_seconds",
    "idle_seconds",
    "bytes_down",
    "bytes_up",
    "eval_bytes_down",
    "eval_bytes_up",
    "energy_joules",
    "idle_energy_joules",
    "test_accuracy",
    "num_test",
    "round_started",
)
POWER_DIR = "power"


class ReportError(Exception):
    """A results dir a report cannot be made from; the message names the file."""


@dataclass
class Run:
    """One run's record, as a report reads it.

    ``grid[column][i, j]`` is round ``rounds[i]``, device ``devices[j]`` (NaN: no row or not
    measured); ``status[i, j]`` is the row's status ('' where there is no row).
    """

    path: Path
    experiment: dict[str, Any]
    summary: dict[str, Any] | None
    events: dict[int, dict[str, Any]]  # progress 'round' events by round
    devices: list[str]
    device_class: dict[str, str]
    arch: dict[str, str]
    rounds: np.ndarray
    grid: dict[str, np.ndarray]
    status: np.ndarray
    power: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.experiment.get("experiment", {}).get("id") or self.path.name)

    @property
    def method(self) -> str:
        return str(self.experiment.get("algorithm", {}).get("name", "?"))

    @property
    def dataset(self) -> str:
        return str(self.experiment.get("data", {}).get("dataset", "?"))

    @property
    def planned_rounds(self) -> int | None:
        value = self.experiment.get("experiment", {}).get("rounds")
        return int(value) if isinstance(value, int) else None

    @property
    def partial(self) -> str:
        """Why the record is incomplete ('' when the run finished every round)."""
        if self.summary is None:
            return "no summary.json: the run did not finish (still running, or killed)"
        status = self.summary.get("status")
        if status != "finished":
            error = self.summary.get("error") or ""
            return f"the run ended '{status}'" + (f": {error}" if error else "")
        planned = self.planned_rounds
        if planned is not None and len(self.rounds) < planned:
            return f"{len(self.rounds)} of {planned} rounds recorded"
        return ""


def _json(path: Path, required: bool) -> Any:
    if not path.exists():
        if required:
            raise ReportError(f"{path}: missing (is this a results directory of htfl run?)")
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"{path}: not readable JSON: {err}") from None


def _progress(path: Path, notes: list[str]) -> dict[int, dict[str, Any]]:
    events: dict[int, dict[str, Any]] = {}
    if not path.exists():
        notes.append(f"{path.name} missing: no round times or wall-clock axis")
        return events
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: not readable: {err}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):  # the run was killed while writing its last event
                notes.append(f"{path.name}:{number}: last line cut short, ignored")
                continue
            raise ReportError(f"{path}:{number}: not a JSON event: {err}") from None
        if isinstance(event, dict) and event.get("event") == "round":
            try:
                events[int(event["round"])] = event
            except (KeyError, TypeError, ValueError):
                raise ReportError(f"{path}:{number}: round event without a round number") from None
    return events


def _rows(
    path: Path, notes: list[str]
) -> tuple[list[str], list[tuple[int, str, str, str, str]], np.ndarray]:
    if not path.exists():
        raise ReportError(f"{path}: missing (is this a results directory of htfl run?)")
    try:
        fh = open(path, newline="")  # noqa: SIM115 - closed below
    except OSError as err:
        raise ReportError(f"{path}: not readable: {err}") from None
    with fh:
        try:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header:
                raise ReportError(f"{path}: empty (no header line)")
            index = {name: i for i, name in enumerate(header)}
            lacking = [c for c in REQUIRED if c not in index]
            if lacking:
                raise ReportError(f"{path}: no column {', '.join(lacking)} in the header")
            wanted = [c for c in NUMERIC if c in index]
            lines = list(reader)
        except (csv.Error, UnicodeDecodeError) as err:
            raise ReportError(f"{path}: not a CSV file: {err}") from None
    complete = lines
    for n, fields in enumerate(lines, 2):
        if len(fields) != len(header):
            if n == len(lines) + 1:  # the run was killed while writing its last row
                notes.append(f"{path.name}:{n}: last row cut short, ignored")
                complete = lines[:-1]
                continue
            raise ReportError(f"{path}:{n}: {len(fields)} fields, the header has {len(header)}")
    # column by column, in numpy: 50,000 rows take a fraction of a second
    columns = list(zip(*complete, strict=True)) if complete else [()] * len(header)

    def column(name: str) -> np.ndarray:
        return np.array(columns[index[name]], dtype=str)

    def numbers(name: str, kind: type) -> np.ndarray:
        text = column(name)
        text = np.where((text == "") | (text == "None"), "nan", text)
        try:
            return text.astype(kind)
        except ValueError:  # find the culprit, to name its line
            for n, value in enumerate(text.tolist(), 2):
                try:
                    kind(value)
                except ValueError:
                    what = "a round number" if name == "round" else "a number"
                    raise ReportError(
                        f"{path}:{n}: column {name}: {value!r} is not {what}"
                    ) from None
            raise

    rounds = numbers("round", int).tolist()
    arch = column("arch").tolist() if "arch" in index else [""] * len(complete)
    keys = list(
        zip(
            rounds,
            column("device").tolist(),
            column("device_class").tolist(),
            arch,
            column("status").tolist(),
            strict=True,
        )
    )
    if "modelled" in index and np.any(column("modelled") == "True"):
        notes.append(
            "times, transfers and energy of simulated clients are modelled from their device "
            "class's profile (htfl run --simulate), not measured on a device"
        )
    values = np.full((len(complete), len(wanted)), np.nan)
    for k, name in enumerate(wanted):
        values[:, k] = numbers(name, float)
    return wanted, keys, values


#: Points kept per power trace line: a plot needs no more, a long run has millions.
TRACE_POINTS = 4000


def _power(directory: Path) -> dict[str, dict[str, np.ndarray]]:
    """``power/<device>.csv`` traces where the run has them (columns ``t``, ``watts`` and,
    when present, ``scope``; others are not read), thinned to :data:`TRACE_POINTS` per scope."""
    traces: dict[str, dict[str, np.ndarray]] = {}
    if not directory.is_dir():
        return traces
    for path in sorted(directory.glob("*.csv")):
        try:
            with open(path, newline="") as fh:
                reader = csv.reader(fh)
                header = next(reader, [])
                if "t" not in header or "watts" not in header:
                    raise ReportError(f"{path}: no column t or watts in the header")
                it, iw = header.index("t"), header.index("watts")
                isc = header.index("scope") if "scope" in header else None
                t, w, scope = [], [], []
                for r in reader:
                    if len(r) != len(header) or not r[it] or not r[iw]:
                        continue  # a row cut short by a stop, or a sample without power
                    t.append(r[it])
                    w.append(r[iw])
                    scope.append(r[isc] if isc is not None else "")
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise ReportError(f"{path}: not a readable CSV file: {err}") from None
        try:
            times, watts = np.array(t, dtype=float), np.array(w, dtype=float)
        except ValueError:
            raise ReportError(f"{path}: a t or watts value is not a number") from None
        scopes = np.array(scope, dtype=object)
        keep = np.zeros(len(times), dtype=bool)
        for name in set(scope):
            at = np.nonzero(scopes == name)[0]
            keep[at[:: max(1, len(at) // TRACE_POINTS)]] = True
        traces[path.stem] = {"t": times[keep], "watts": watts[keep], "scope": scopes[keep]}
    return traces


def load_run(directory: str | Path) -> Run:
    """The run recorded in ``directory``; :class:`ReportError` if it cannot be reported."""
    path = Path(directory)
    if not path.is_dir():
        raise ReportError(f"{path}: not a directory")
    notes: list[str] = []
    experiment = _json(path / "experiment.json", required=True)
    if not isinstance(experiment, dict):
        raise ReportError(f"{path / 'experiment.json'}: not an experiment (expected an object)")
    summary = _json(path / SUMMARY_FILE, required=False)
    if summary is not None and not isinstance(summary, dict):
        raise ReportError(f"{path / SUMMARY_FILE}: not a summary (expected an object)")
    events = _progress(path / PROGRESS_FILE, notes)
    wanted, keys, values = _rows(path / ROWS_FILE, notes)

    devices: dict[str, int] = {}
    device_class: dict[str, str] = {}
    arch: dict[str, str] = {}
    round_index: dict[int, int] = {}
    for rnd, device, cls, arc, _ in keys:
        if device not in devices:
            devices[device] = len(devices)
            device_class[device], arch[device] = cls, arc
        round_index.setdefault(rnd, 0)
    rounds = np.array(sorted(round_index), dtype=int)
    for i, rnd in enumerate(rounds):
        round_index[int(rnd)] = i
    shape = (len(rounds), len(devices))
    data = np.full((*shape, len(NUMERIC)), np.nan)
    status = np.full(shape, "", dtype=object)
    if keys:
        rows_i = np.array([round_index[k[0]] for k in keys])
        rows_j = np.array([devices[k[1]] for k in keys])
        # a round recorded twice (a resumed run) keeps its last record: numpy assigns a
        # repeated index its last value
        status[rows_i, rows_j] = [k[4] for k in keys]
        if wanted:
            at = np.array([NUMERIC.index(c) for c in wanted])
            data[rows_i[:, None], rows_j[:, None], at[None, :]] = values
    grid = {c: data[:, :, k] for k, c in enumerate(NUMERIC)}
    return Run(
        path=path,
        experiment=experiment,
        summary=summary,
        events=events,
        devices=list(devices),
        device_class=device_class,
        arch=arch,
        rounds=rounds,
        grid=grid,
        status=status,
        power=_power(path / POWER_DIR),
        notes=notes,
    )
