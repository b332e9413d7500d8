"""``htfl report``: results dirs in, one HTML page plus every plot as PNG and SVG out.

The page is rendered into a fresh directory beside ``out`` and moved into place only when
complete, so a failed render leaves no half-written report (and an earlier report stays).
"""

from __future__ import annotations

import io
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from htfl.workstation.report import figures
from htfl.workstation.report.load import ReportError, Run, load_run
from htfl.workstation.report.page import Plot, page
from htfl.workstation.report.series import Series, series

PAGE = "index.html"


def default_out(dirs: list[Path]) -> Path:
    """``DIR/report`` for one run; beside the first run, named after all, for several."""
    if len(dirs) == 1:
        return dirs[0] / "report"
    return dirs[0].parent / ("report-" + "-vs-".join(d.name for d in dirs))


def check_comparable(runs: list[Run]) -> None:
    datasets = {r.dataset for r in runs}
    if len(datasets) > 1:
        named = ", ".join(f"{r.path} ({r.dataset})" for r in runs)
        raise ReportError(
            f"the results dirs use different datasets ({named}); side-by-side plots compare "
            "methods on one dataset: report them separately"
        )


def choose_target(all_series: list[Series], target: float | None) -> tuple[float, str]:
    if target is not None:
        return target, "named with --target-accuracy"
    bests = [b for s in all_series if (b := s.best_accuracy) is not None]
    if not bests:
        return math.nan, "no accuracy recorded"
    if len(all_series) == 1:
        return min(bests), "the best mean accuracy the run reached"
    return min(bests), "the lowest of the runs' best mean accuracies, so that every run reaches it"


def _plots(all_series: list[Series], target: float) -> list[tuple[str, str, str, Callable]]:
    """(file name, title, caption, figure maker) for every plot of the page."""
    out: list[tuple[str, str, str, Callable]] = [
        (
            "accuracy",
            "Mean accuracy",
            "Mean over every selected device; hollow circles: rounds in which a device "
            "that did not reply counts with its last known accuracy.",
            lambda: figures.accuracy(all_series),
        ),
    ]
    if any(s.has_energy for s in all_series):
        out.append(
            (
                "energy",
                "Energy and accuracy against energy",
                "Energy of all devices, cumulative over the rounds.",
                lambda: figures.energy(all_series),
            )
        )
    if not math.isnan(target):
        out.append(
            (
                "to-target",
                "Time and energy to the target accuracy",
                "When the mean accuracy first reached the target.",
                lambda: figures.to_target(all_series, target),
            )
        )
    out += [
        (
            "round-time",
            "Round time: devices, the slowest, the server",
            "Per round: until the fastest device's training reply, then waiting for the slowest "
            "(training and evaluation), then the server's own work (progress.jsonl, rounds.csv).",
            lambda: figures.round_time(all_series),
        ),
        (
            "bytes",
            "Bytes per round",
            "Training and evaluation message content, all devices.",
            lambda: figures.bytes_per_round(all_series),
        ),
    ]
    for k, s in enumerate(all_series, 1):
        run = s.run.id
        out += [
            (
                f"accuracy-{k}",
                f"Accuracy per class and device: {run}",
                "Class mean: the same definition over the class's devices.",
                lambda s=s: figures.accuracy_detail(s),
            ),
            (
                f"bytes-{k}",
                f"Bytes per device: {run}",
                "Training and evaluation message content per device.",
                lambda s=s: figures.bytes_detail(s),
            ),
            (
                f"gantt-{k}",
                f"One round per device: {run}",
                "Measured phase lengths (rounds.csv) of the last round in which every device "
                "answered. The device does not timestamp a message's arrival, so the wire and "
                "Flower time of both directions is drawn as one segment before the handling; "
                "evaluation is drawn from the end of the server's aggregation.",
                lambda s=s: figures.gantt(s),
            ),
        ]
        if s.has_energy:
            out.append(
                (
                    f"energy-{k}",
                    f"Energy per round: {run}",
                    "Per device and per device class.",
                    lambda s=s: figures.energy_detail(s),
                )
            )
        if s.run.power:
            out.append(
                (
                    f"power-{k}",
                    f"Power traces: {run}",
                    "The raw power traces recorded with the run (power/).",
                    lambda s=s: figures.power(s),
                )
            )
    return out


def _save(fig: Figure, directory: Path, name: str) -> bytes:
    for ax in fig.axes:
        if ax.get_xlabel() == "round":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=90)
    fig.savefig(directory / f"{name}.svg", format="svg")
    data = png.getvalue()
    (directory / f"{name}.png").write_bytes(data)
    return data


def _replace(tmp: Path, out: Path) -> None:
    if out.exists():
        if not (out / PAGE).is_file():
            raise ReportError(f"{out}: exists and is not a report directory; not overwritten")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def render(dirs: list[Path], out: Path | None = None, target: float | None = None) -> Path:
    """Write the report of ``dirs`` to ``out``; the page's path. :class:`ReportError` on a
    results dir it cannot read, or runs it cannot put side by side."""
    runs = [load_run(d) for d in dirs]
    check_comparable(runs)
    all_series = [series(r) for r in runs]
    chosen, source = choose_target(all_series, target)
    out = out or default_out(dirs)
    if out.exists() and not (out / PAGE).is_file():
        raise ReportError(f"{out}: exists and is not a report directory; not overwritten")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        plots = []
        with matplotlib.rc_context({"svg.fonttype": "none", "path.simplify": True}):
            for name, title, caption, make in _plots(all_series, chosen):
                fig = make()
                if fig is not None:
                    plots.append(Plot(name, title, caption, _save(fig, tmp, name)))
        (tmp / PAGE).write_text(page(all_series, plots, chosen, source))
        _replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / PAGE
