"""The report's HTML page: one self-contained file (plots embedded as PNG), opens offline.

Every number in a table cell carries its exact value in ``data-value`` (``repr`` of the
float), so a reader or a test can compare it with ``rounds.csv`` without parsing the
rounded text.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass

import numpy as np

from htfl.workstation.report.series import Series

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1300px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
.partial { background: #fff3cd; border: 1px solid #e0c060; padding: 0.5em; margin: 0.5em 0; }
figure { margin: 1em 0 2em; } img { max-width: 100%; } figcaption { font-size: 0.85em; }
"""


@dataclass
class Plot:
    name: str
    title: str
    caption: str
    png: bytes


def _cell(key: str, value: float | int | None, fmt: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return f'<td data-key="{key}" data-value="">–</td>'
    return f'<td data-key="{key}" data-value="{value!r}">{format(value, fmt)}</td>'


def _text(key: str, value: str) -> str:
    return f'<td class="text" data-key="{key}">{html.escape(value)}</td>'


SUMMARY_HEAD = (
    "run",
    "method",
    "dataset",
    "devices",
    "rounds",
    "final accuracy",
    "best accuracy",
    "energy (J)",
    "time (s)",
    "bytes down",
    "bytes up",
    "target reached in round",
    "time to target (s)",
    "energy to target (J)",
)


def summary_table(all_series: list[Series], target: float) -> str:
    rows = []
    for s in all_series:
        run, totals = s.run, s.totals()
        rnd, seconds, joules = s.to_target(target)
        planned = run.planned_rounds
        rows.append(
            f'<tr data-run="{html.escape(run.id)}">'
            + _text("run", run.id + (" (partial)" if run.partial else ""))
            + _text("method", run.method)
            + _text("dataset", run.dataset)
            + _cell("devices", len(run.devices), "d")
            + f'<td data-key="rounds" data-value="{len(run.rounds)}">{len(run.rounds)}'
            + (f" of {planned}" if planned is not None else "")
            + "</td>"
            + _cell("final_accuracy", s.final_accuracy, ".4f")
            + _cell("best_accuracy", s.best_accuracy, ".4f")
            + _cell("energy_joules", totals["energy_joules"], ".1f")
            + _cell("wall_seconds", s.wall_seconds, ".1f")
            + _cell("bytes_down", totals["bytes_down"], ",.0f")
            + _cell("bytes_up", totals["bytes_up"], ",.0f")
            + _cell("target_round", rnd, "d")
            + _cell("seconds_to_target", seconds, ".1f")
            + _cell("joules_to_target", joules, ".1f")
            + "</tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in SUMMARY_HEAD)
    return f'<table id="summary"><tr>{head}</tr>{"".join(rows)}</table>'


def device_table(s: Series) -> str:
    run = s.run
    rows = []
    for j, device in enumerate(run.devices):
        statuses = run.status[:, j]
        energy = s.energy[:, j]
        rows.append(
            f'<tr data-device="{html.escape(device)}">'
            + _text("device", device)
            + _text("device_class", run.device_class[device])
            + _text("arch", run.arch[device])
            + _cell("answered", int(np.isin(statuses, ("ok", "set_aside")).sum()), "d")
            + _cell("late", int((statuses == "late").sum()), "d")
            + _cell("error", int((statuses == "error").sum()), "d")
            + _cell(
                "energy_joules",
                float(np.nansum(energy)) if np.any(~np.isnan(energy)) else None,
                ".1f",
            )
            + _cell("bytes_down", float(np.nansum(s.bytes_down[:, j])), ",.0f")
            + _cell("bytes_up", float(np.nansum(s.bytes_up[:, j])), ",.0f")
            + "</tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "device",
            "class",
            "model",
            "rounds answered",
            "late",
            "error",
            "energy (J)",
            "bytes down",
            "bytes up",
        )
    )
    return f'<table class="devices"><tr>{head}</tr>{"".join(rows)}</table>'


DEFINITIONS = """
<p><b>Mean accuracy</b>: each device's test accuracy on its own test split, weighted by the
split's size, over every selected device; a device that did not reply in a round counts with
its last known accuracy (rounds where that happened are marked with a hollow circle). It is the
definition the run itself reports (progress, summary, the server's /metrics).
<b>Energy</b> of a device in a round: its energy while handling the round's messages plus its
idle energy before the round's message, as recorded in rounds.csv. <b>Bytes</b>: message content
of the round's training and evaluation messages, as recorded. <b>Time</b>: seconds from the
first round's start to a round's end (progress.jsonl).</p>
"""


def page(all_series: list[Series], plots: list[Plot], target: float, target_source: str) -> str:
    title = "htfl report: " + ", ".join(s.run.id for s in all_series)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
    ]
    for s in all_series:
        run = s.run
        if run.partial:
            parts.append(
                f'<div class="partial"><b>{html.escape(run.id)}: partial record.</b> '
                f"{html.escape(run.partial)}. The page shows what was recorded.</div>"
            )
        for note in run.notes:
            parts.append(f'<div class="partial">{html.escape(run.id)}: {html.escape(note)}</div>')
    parts.append(f"<h2>Summary</h2><p>Target mean accuracy {target:.4f} ({target_source}).</p>")
    parts.append(summary_table(all_series, target))
    parts.append(DEFINITIONS)
    for s in all_series:
        parts.append(f"<h3>Devices: {html.escape(s.run.id)}</h3>{device_table(s)}")
    for plot in plots:
        data = base64.b64encode(plot.png).decode("ascii")
        parts.append(
            f'<figure id="{plot.name}"><h2>{html.escape(plot.title)}</h2>'
            f'<img alt="{html.escape(plot.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(plot.caption)} "
            f'(<a href="{plot.name}.svg">SVG</a>, <a href="{plot.name}.png">PNG</a>)'
            "</figcaption></figure>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)
