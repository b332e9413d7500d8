"""The experiment's mean accuracy: one definition for the run, its live view and its report.

The mean is sample-weighted (each device's accuracy on its own test split, weighted by that
split's size, as HtFLlib reports it) over **every selected device**: a device that did not
reply this round counts with its last known accuracy, carried forward. A mean over only the
devices that replied jumps whenever a weak device drops out (0.43 to 0.66 in one round was
seen), and runs with different dropouts could not be compared.

The round loop (progress events, summary, the server exporter's
``htfl_server_mean_accuracy_ratio``) and ``htfl report`` (from ``rounds.csv``) feed the same
rows, in the same order, to :class:`AccuracyLedger`, so their numbers are equal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class RoundAccuracy:
    """The mean after one round. ``mean`` is None when no device was evaluated this round
    (a round between evaluations, or one where every evaluation failed)."""

    mean: float | None
    evaluated: int  # devices that reported an accuracy this round
    carried: tuple[str, ...]  # selected devices counted with an earlier round's accuracy


def _known(accuracy: float | None, num_test: float | None) -> bool:
    return (
        accuracy is not None
        and not math.isnan(accuracy)
        and num_test is not None
        and not math.isnan(num_test)
        and num_test > 0
    )


class AccuracyLedger:
    """Each device's last known accuracy; :meth:`record` gives a round's mean."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}

    def record(self, entries: Iterable[tuple[str, float | None, float | None]]) -> RoundAccuracy:
        """``entries``: (device, test accuracy or None, test samples or None) for every device
        selected this round, replied or not, in the order of the round's rows."""
        selected: list[str] = []
        fresh: set[str] = set()
        for device, accuracy, num_test in entries:
            selected.append(device)
            if _known(accuracy, num_test):
                assert accuracy is not None and num_test is not None
                self._last[device] = (float(accuracy), float(num_test))
                fresh.add(device)
        if not fresh:
            return RoundAccuracy(None, 0, ())
        known = [self._last[d] for d in selected if d in self._last]
        total = sum(n for _, n in known)
        mean = sum(a * n for a, n in known) / total
        carried = tuple(d for d in selected if d in self._last and d not in fresh)
        return RoundAccuracy(mean, len(fresh), carried)
