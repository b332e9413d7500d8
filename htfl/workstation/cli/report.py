"""`htfl report`: accuracy, energy, time and bytes of one or more runs, as one HTML page."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from htfl.cli import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="draw a run's accuracy, energy, time and bytes (HTML page + PNG/SVG plots)",
        description="Write one self-contained HTML page (plots embedded; opens offline) and "
        "every plot as PNG and SVG, from the results directories htfl run wrote. Several "
        "directories put their methods side by side (they must share a dataset). A run that "
        "failed or was stopped is drawn as far as it got, marked partial.",
    )
    p.add_argument("results", type=Path, nargs="+", metavar="RESULTS_DIR", help="results/<id>/")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="where to write index.html and the plots (default: RESULTS_DIR/report for one "
        "run; report-A-vs-B beside the first for several)",
    )
    p.add_argument(
        "--target-accuracy",
        type=float,
        default=None,
        metavar="A",
        help="mean accuracy for time- and energy-to-accuracy (default: the best reached; with "
        "several runs, the lowest of their bests)",
    )
    p.set_defaults(func=report)


def report(args: argparse.Namespace) -> int:
    target = args.target_accuracy
    if target is not None and (math.isnan(target) or not 0.0 < target <= 1.0):
        raise UsageError(f"--target-accuracy: expected a ratio in (0, 1], got {target}")
    from htfl.workstation.report import ReportError, render

    try:
        page = render(list(args.results), args.out, target)
    except ReportError as err:
        raise UsageError(str(err)) from None
    print(page)
    return 0
