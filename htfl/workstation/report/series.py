"""The numbers a report shows, derived from one run's rows and progress events.

Every figure and table cell comes from here, so the page has one definition of each number:
the mean accuracy is :class:`htfl.workstation.accuracy.AccuracyLedger`'s (the run's own);
a device's energy in a round is its ``energy_joules`` (handling the round's messages) plus its
``idle_energy_joules`` (idle before the message), as the rows record them; a round's bytes
are the training and evaluation messages' content, both directions as recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from htfl.workstation.accuracy import AccuracyLedger
from htfl.workstation.report.load import Run


def _ledger_means(run: Run, columns: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Mean accuracy per round over the devices at ``columns`` (rows in file order), and how
    many devices were carried forward in each round."""
    acc = run.grid["test_accuracy"].tolist()
    num = run.grid["num_test"].tolist()
    status = run.status.tolist()
    ledger = AccuracyLedger()
    means = np.full(len(run.rounds), np.nan)
    carried = np.zeros(len(run.rounds), dtype=int)
    for i in range(len(run.rounds)):
        entries = [(run.devices[j], acc[i][j], num[i][j]) for j in columns if status[i][j] != ""]
        result = ledger.record(entries)
        if result.mean is not None:
            means[i], carried[i] = result.mean, len(result.carried)
    return means, carried


def _nansum(a: np.ndarray, axis: int) -> np.ndarray:
    """Sum ignoring NaN, NaN where every value is NaN (not measured is not zero)."""
    summed = np.nansum(a, axis=axis)
    return np.where(np.all(np.isnan(a), axis=axis), np.nan, summed)


def first_reaching(values: np.ndarray, target: float) -> int | None:
    hits = np.nonzero(values >= target)[0]
    return int(hits[0]) if len(hits) else None


@dataclass
class Series:
    run: Run
    mean: np.ndarray  # per round; NaN where no device was evaluated
    carried: np.ndarray  # per round: devices counted with an earlier accuracy
    class_mean: dict[str, np.ndarray]
    elapsed: np.ndarray  # per round: seconds from the first round's start to this round's end
    round_seconds: np.ndarray
    wait_seconds: np.ndarray
    aggregate_seconds: np.ndarray
    energy: np.ndarray  # rounds x devices, joules
    bytes_down: np.ndarray  # rounds x devices
    bytes_up: np.ndarray

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.run.device_class.values()))

    def class_columns(self, cls: str) -> list[int]:
        return [j for j, d in enumerate(self.run.devices) if self.run.device_class[d] == cls]

    @property
    def has_energy(self) -> bool:
        return bool(np.any(~np.isnan(self.energy)))

    @property
    def round_energy(self) -> np.ndarray:
        """All devices' energy per round (0 where nothing was measured)."""
        return np.nan_to_num(_nansum(self.energy, axis=1)) if self.energy.size else self.energy

    @property
    def cumulative_energy(self) -> np.ndarray:
        return np.cumsum(self.round_energy)

    def class_energy(self, cls: str) -> np.ndarray:
        return _nansum(self.energy[:, self.class_columns(cls)], axis=1)

    def evaluated(self) -> np.ndarray:
        return ~np.isnan(self.mean)

    @property
    def final_accuracy(self) -> float | None:
        done = self.mean[self.evaluated()]
        return float(done[-1]) if len(done) else None

    @property
    def best_accuracy(self) -> float | None:
        done = self.mean[self.evaluated()]
        return float(done.max()) if len(done) else None

    @property
    def wall_seconds(self) -> float | None:
        known = self.elapsed[~np.isnan(self.elapsed)]
        if len(known):
            return float(known[-1])
        summary = self.run.summary or {}
        wall = summary.get("wall_seconds")
        return float(wall) if isinstance(wall, (int, float)) else None

    def to_target(self, target: float) -> tuple[int | None, float | None, float | None]:
        """(round, seconds, joules) when the mean accuracy first reached ``target``."""
        i = first_reaching(np.nan_to_num(self.mean, nan=-math.inf), target)
        if i is None:
            return None, None, None
        seconds = float(self.elapsed[i]) if not math.isnan(self.elapsed[i]) else None
        joules = float(self.cumulative_energy[i]) if self.has_energy else None
        return int(self.run.rounds[i]), seconds, joules

    def totals(self) -> dict[str, float | None]:
        def total(a: np.ndarray) -> float | None:
            return float(np.nansum(a)) if np.any(~np.isnan(a)) else None

        return {
            "energy_joules": total(self.energy),
            "bytes_down": total(self.bytes_down),
            "bytes_up": total(self.bytes_up),
        }


def _event_column(run: Run, key: str) -> np.ndarray:
    out = np.full(len(run.rounds), np.nan)
    for i, rnd in enumerate(run.rounds):
        value = run.events.get(int(rnd), {}).get(key)
        if isinstance(value, (int, float)):
            out[i] = float(value)
    return out


def series(run: Run) -> Series:
    g = run.grid
    mean, carried = _ledger_means(run, list(range(len(run.devices))))
    class_mean = {}
    for cls in sorted(set(run.device_class.values())):
        cols = [j for j, d in enumerate(run.devices) if run.device_class[d] == cls]
        class_mean[cls] = _ledger_means(run, cols)[0]
    energy = np.stack([g["energy_joules"], g["idle_energy_joules"]])
    return Series(
        run=run,
        mean=mean,
        carried=carried,
        class_mean=class_mean,
        elapsed=_event_column(run, "elapsed_seconds"),
        round_seconds=_event_column(run, "round_seconds"),
        wait_seconds=_event_column(run, "wait_seconds"),
        aggregate_seconds=_event_column(run, "aggregate_seconds"),
        energy=_nansum(energy, axis=0),
        bytes_down=_nansum(np.stack([g["bytes_down"], g["eval_bytes_down"]]), axis=0),
        bytes_up=_nansum(np.stack([g["bytes_up"], g["eval_bytes_up"]]), axis=0),
    )
