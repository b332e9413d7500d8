"""Energy from power samples: trapezoid integration and attribution to time intervals.

Everything here is a pure function of its arguments.

Power between two consecutive samples is taken to vary linearly (the trapezoid rule), and an
interval boundary that falls between two samples is handled by interpolating linearly at the
boundary. Where the samples are too far apart to trust - more than ``gap_factor`` times the
median sample period, unless the stretch is one window mean kept as a step (see
``Meter.window_means``) - the stretch is *not* interpolated: it is reported as a :class:`Gap`,
contributes no energy, and the interval is marked ``partial``. The same happens for the parts
of an interval before the first or after the last sample (``reason="no-data"``) and, by
default, next to samples taken while charging (``reason="charging"``; see
:class:`~htfl.device.power.meter.PowerSample`). ``covered_seconds`` says how much of the
interval the energy figure covers, so a consumer can decide whether to scale ``mean_watts`` up.

Clocks: samples carry the *device's* wall clock, intervals the *server's*. ``clock_offset`` is
``device_clock - server_clock`` in seconds (positive when the device's clock is ahead); a
sample at device time ``t`` happened at server time ``t - clock_offset``.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from htfl.device.power.meter import PowerSample

DEFAULT_GAP_FACTOR = 3.0


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch without trustworthy samples, in the server's clock where attributed."""

    start: float
    end: float
    reason: str = "gap"  # "gap", "no-data", "charging", "disconnect"

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class IntervalEnergy:
    """Energy attributed to one labelled interval."""

    label: str
    start: float
    end: float
    joules: float
    partial: bool
    gaps: tuple[Gap, ...]
    samples: int
    covered_seconds: float

    @property
    def mean_watts(self) -> float:
        """Mean power over the covered part of the interval (NaN if nothing is covered)."""
        return self.joules / self.covered_seconds if self.covered_seconds > 0 else math.nan


def _time(point: tuple) -> float:
    """Sort key: time only. Two samples at one instant (a step: a window mean's end and the
    next window's start) keep their order; sorting by watts too would swap a step down."""
    return point[0]


def trapezoid(samples: Iterable[PowerSample]) -> float:
    """Plain trapezoid integral in joules over the samples (sorted by time, no gap checks)."""
    pts = sorted(((s.t, s.watts) for s in samples), key=_time)
    total = 0.0
    for (t0, w0), (t1, w1) in zip(pts, pts[1:], strict=False):
        total += (w0 + w1) * 0.5 * (t1 - t0)
    return total


def median_period(samples: Iterable[PowerSample]) -> float | None:
    """Median spacing of distinct sample times, or ``None`` with fewer than two."""
    ts = sorted(s.t for s in samples)
    periods = [b - a for a, b in zip(ts, ts[1:], strict=False) if b > a]
    return statistics.median(periods) if periods else None


def find_gaps(samples: Iterable[PowerSample], gap_factor: float = DEFAULT_GAP_FACTOR) -> list[Gap]:
    """Spans between consecutive samples longer than ``gap_factor`` x the median period."""
    ts = sorted(s.t for s in samples)
    periods = [b - a for a, b in zip(ts, ts[1:], strict=False) if b > a]
    if not periods:
        return []
    limit = gap_factor * statistics.median(periods)
    return [Gap(a, b) for a, b in zip(ts, ts[1:], strict=False) if b - a > limit]


def _interval_fields(interval: object) -> tuple[str, float, float]:
    if isinstance(interval, Sequence) and not isinstance(interval, str):
        label, start, end = interval
    else:
        label = interval.label  # type: ignore[attr-defined]
        start = interval.start  # type: ignore[attr-defined]
        end = interval.end  # type: ignore[attr-defined]
    return str(label), float(start), float(end)


def _add_gap(gaps: list[Gap], start: float, end: float, reason: str) -> None:
    if gaps and gaps[-1].reason == reason and gaps[-1].end >= start:
        gaps[-1] = Gap(gaps[-1].start, max(end, gaps[-1].end), reason)
    else:
        gaps.append(Gap(start, end, reason))


def attribute(
    samples: Iterable[PowerSample],
    intervals: Iterable[tuple[str, float, float] | object],
    *,
    clock_offset: float = 0.0,
    gap_factor: float = DEFAULT_GAP_FACTOR,
    exclude_charging: bool = True,
) -> list[IntervalEnergy]:
    """Energy per interval.

    ``intervals`` are ``(label, start, end)`` tuples (or objects with those attributes) in the
    server's clock; ``samples`` come from one device whose clock is ``clock_offset`` seconds
    ahead of the server's. The median sample period is computed over all samples; see the
    module docstring for how gaps, edges and charging samples are treated. Returns one
    :class:`IntervalEnergy` per interval, in order. Raises ``ValueError`` for an interval
    whose end is not after its start.
    """
    if gap_factor <= 0:
        raise ValueError("gap_factor must be positive")
    pts = sorted(((s.t - clock_offset, s.watts, s.charging) for s in samples), key=_time)
    ts = [p[0] for p in pts]
    periods = [b - a for a, b in zip(ts, ts[1:], strict=False) if b > a]
    limit = gap_factor * statistics.median(periods) if periods else math.inf
    n = len(pts)
    out: list[IntervalEnergy] = []
    for interval in intervals:
        label, a, b = _interval_fields(interval)
        if not b > a:
            raise ValueError(f"interval {label!r}: end {b} is not after start {a}")
        gaps: list[Gap] = []
        joules = 0.0
        covered = 0.0
        if n == 0:
            gaps.append(Gap(a, b, "no-data"))
        else:
            if a < ts[0]:
                _add_gap(gaps, a, min(b, ts[0]), "no-data")
            i = max(bisect.bisect_right(ts, a) - 1, 0)
            while i < n - 1 and ts[i] < b:
                t0, w0, c0 = pts[i]
                t1, w1, c1 = pts[i + 1]
                # a window mean, kept as a step (the same watts at both ends, the first end
                # sharing its instant with the sample before): exact however long, no gap
                step = w0 == w1 and i > 0 and pts[i - 1][0] == t0
                i += 1
                lo = t0 if t0 > a else a
                hi = t1 if t1 < b else b
                if hi <= lo or t1 <= t0:
                    continue
                span = t1 - t0
                if span > limit and not step:
                    _add_gap(gaps, lo, hi, "gap")
                elif exclude_charging and (c0 or c1):
                    _add_gap(gaps, lo, hi, "charging")
                else:
                    slope = (w1 - w0) / span
                    w_lo = w0 + slope * (lo - t0)
                    w_hi = w0 + slope * (hi - t0)
                    joules += (w_lo + w_hi) * 0.5 * (hi - lo)
                    covered += hi - lo
            if b > ts[-1]:
                _add_gap(gaps, max(a, ts[-1]), b, "no-data")
        count = bisect.bisect_right(ts, b) - bisect.bisect_left(ts, a)
        out.append(
            IntervalEnergy(
                label=label,
                start=a,
                end=b,
                joules=joules,
                partial=bool(gaps),
                gaps=tuple(gaps),
                samples=count,
                covered_seconds=covered,
            )
        )
    return out


def integrate(
    samples: Iterable[PowerSample],
    start: float | None = None,
    end: float | None = None,
    *,
    gap_factor: float = DEFAULT_GAP_FACTOR,
) -> IntervalEnergy:
    """Energy over ``[start, end]`` (default: the samples' whole span) with gap handling."""
    samples = list(samples)
    if start is None or end is None:
        if len(samples) < 2:
            raise ValueError("need at least two samples, or an explicit start and end")
        ts = [s.t for s in samples]
        start = min(ts) if start is None else start
        end = max(ts) if end is None else end
    return attribute(samples, [("all", start, end)], gap_factor=gap_factor)[0]
