"""What a report's summary table must say, computed here straight from ``rounds.csv`` (the
csv module, no report code), and the table read back from the page's HTML."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path


def expected_summary(results_dir: Path) -> dict[str, float]:
    """Summary figures of a run from its rows: the mean accuracy over every selected device,
    a device that did not reply counting with its last accuracy, weighted by test samples."""
    with open(results_dir / "rounds.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rounds: dict[int, list[dict[str, str]]] = {}
    for row in rows:
        rounds.setdefault(int(row["round"]), []).append(row)
    last: dict[str, tuple[float, float]] = {}
    means = []
    for rnd in sorted(rounds):
        fresh = False
        for row in rounds[rnd]:
            if row["test_accuracy"] and row["num_test"] and float(row["num_test"]) > 0:
                last[row["device"]] = (float(row["test_accuracy"]), float(row["num_test"]))
                fresh = True
        if fresh:
            known = [last[r["device"]] for r in rounds[rnd] if r["device"] in last]
            means.append(sum(a * n for a, n in known) / sum(n for _, n in known))

    def total(*columns: str) -> float:
        return sum(float(r[c]) for r in rows for c in columns if r[c])

    events = [
        json.loads(line)
        for line in (results_dir / "progress.jsonl").read_text().splitlines()
        if line.strip()
    ]
    elapsed = [e["elapsed_seconds"] for e in events if e.get("event") == "round"]
    return {
        "devices": len({r["device"] for r in rows}),
        "rounds": len(rounds),
        "final_accuracy": means[-1],
        "best_accuracy": max(means),
        "energy_joules": total("energy_joules", "idle_energy_joules"),
        "bytes_down": total("bytes_down", "eval_bytes_down"),
        "bytes_up": total("bytes_up", "eval_bytes_up"),
        "wall_seconds": elapsed[-1],
    }


class _Summary(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self._in = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._in = a.get("id") == "summary"
        elif self._in and tag == "tr" and "data-run" in a:
            self.rows.append({"run": a["data-run"] or ""})
        elif self._in and tag == "td" and self.rows and "data-value" in a:
            self.rows[-1][a["data-key"] or ""] = a["data-value"] or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in = False


def summary_rows(page: Path) -> list[dict[str, str]]:
    """The summary table's rows: {data-key: data-value} (exact values) per run."""
    parser = _Summary()
    parser.feed(page.read_text())
    return parser.rows
