"""Parse the metric tables of ``docs/metrics.md``.

Each ``## <Exporter>`` section may hold one Markdown table whose header has (at
least) the columns ``Name`` and ``Type``; ``Unit``, ``Labels`` and ``Meaning``
are read when present.  Names and labels may be wrapped in backticks; labels
are comma-separated, and ``-``/``—``/empty means none.  Tables without a
``Name`` and ``Type`` column are ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MetricRow", "documented_metrics"]

_REPO_ROOT = Path(__file__).resolve().parents[2]
_NONE = {"", "-", "—", "–", "none", "n/a"}


@dataclass(frozen=True)
class MetricRow:
    name: str
    type: str
    unit: str
    labels: tuple[str, ...]
    meaning: str
    section: str


def _cells(line: str) -> list[str]:
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|"):
        body = body[:-1]
    return [c.strip() for c in body.split("|")]


def _is_separator(cells: list[str]) -> bool:
    return all(c and set(c) <= set(":- ") for c in cells)


def _plain(cell: str) -> str:
    return cell.replace("`", "").strip()


def _resolve(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return _REPO_ROOT / p


def documented_metrics(
    path: str | os.PathLike[str] = "docs/metrics.md", section: str | None = None
) -> dict[str, MetricRow]:
    """``{metric name: row}`` of every documented metric (of one *section* if given).

    A relative *path* that does not exist from the working directory is taken
    relative to the repository root.  Raises ``ValueError`` on a metric listed
    twice.
    """
    text = _resolve(path).read_text(encoding="utf-8")
    rows: dict[str, MetricRow] = {}
    current = ""
    header: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("## "):
            current = line[3:].strip()
            header = None
            continue
        if not line.startswith("|"):
            header = None
            continue
        cells = _cells(line)
        if header is None:
            lowered = [c.lower() for c in cells]
            header = lowered if {"name", "type"} <= set(lowered) else []
            continue
        if not header or _is_separator(cells):
            continue
        if section is not None and current != section:
            continue
        record = dict(zip(header, cells, strict=False))
        name = _plain(record.get("name", ""))
        if not name:
            continue
        labels_cell = _plain(record.get("labels", ""))
        labels = (
            ()
            if labels_cell.lower() in _NONE
            else tuple(label.strip() for label in labels_cell.split(",") if label.strip())
        )
        unit = _plain(record.get("unit", ""))
        row = MetricRow(
            name=name,
            type=_plain(record.get("type", "")).lower(),
            unit="" if unit.lower() in _NONE else unit,
            labels=labels,
            meaning=record.get("meaning", "").strip(),
            section=current,
        )
        if name in rows:
            raise ValueError(f"{path}: metric {name} documented twice")
        rows[name] = row
    return rows
