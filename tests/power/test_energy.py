"""Energy integration and attribution on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from htfl.device.power.energy import Gap, attribute, find_gaps, integrate, median_period, trapezoid
from htfl.device.power.meter import PowerSample


def series(points, charging=()):
    return [PowerSample(t, w, None, None, "test", t in charging) for t, w in points]


RAMP = series([(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)])  # w = t + 1


def test_trapezoid_on_a_ramp_is_exact():
    # integral of (t + 1) from 0 to 4 = 8 + 4
    assert trapezoid(RAMP) == pytest.approx(12.0)
    assert trapezoid(reversed(RAMP)) == pytest.approx(12.0)  # order does not matter
    assert trapezoid(RAMP[:1]) == 0.0


def test_trapezoid_non_uniform_spacing():
    samples = series([(0.0, 4.0), (0.5, 4.0), (2.0, 1.0)])
    # 4 W x 0.5 s + (4 + 1) / 2 W x 1.5 s
    assert trapezoid(samples) == pytest.approx(2.0 + 3.75)


def test_interval_boundaries_are_interpolated():
    (e,) = attribute(RAMP, [("round-1", 0.5, 2.5)])
    # power at 0.5 is 1.5 W, at 2.5 is 3.5 W: linear, so mean 2.5 W over 2 s
    assert e.joules == pytest.approx(5.0)
    assert e.partial is False
    assert e.gaps == ()
    assert e.samples == 2  # t = 1 and t = 2
    assert e.covered_seconds == pytest.approx(2.0)
    assert e.mean_watts == pytest.approx(2.5)


def test_several_intervals_partition_the_total():
    parts = attribute(RAMP, [("a", 0, 1), ("b", 1, 3), ("c", 3, 4)])
    assert [p.joules for p in parts] == pytest.approx([1.5, 6.0, 4.5])
    assert sum(p.joules for p in parts) == pytest.approx(trapezoid(RAMP))
    assert [p.label for p in parts] == ["a", "b", "c"]


def test_interval_inside_one_sample_period():
    (e,) = attribute(RAMP, [("x", 1.25, 1.75)])
    assert e.joules == pytest.approx(0.5 * 2.5)
    assert e.samples == 0
    assert not e.partial


def test_clock_offset_moves_samples_into_server_time():
    device_clock_ahead = 10.0
    shifted = series([(t + device_clock_ahead, w) for t, w in [(0, 1), (1, 2), (2, 3), (3, 4)]])
    (e,) = attribute(shifted, [("r", 0.5, 2.5)], clock_offset=device_clock_ahead)
    assert e.joules == pytest.approx(5.0)
    (wrong,) = attribute(shifted, [("r", 0.5, 2.5)])  # without the correction: no data at all
    assert wrong.joules == 0.0
    assert wrong.partial
    assert wrong.gaps == (Gap(0.5, 2.5, "no-data"),)


def test_long_gap_is_reported_not_interpolated():
    # 1 Hz at 2 W, then nothing from 3 s to 10 s (7 s > 3 x 1 s median period)
    samples = series([(0, 2), (1, 2), (2, 2), (3, 2), (10, 2), (11, 2), (12, 2)])
    assert median_period(samples) == 1.0
    assert find_gaps(samples) == [Gap(3, 10)]
    whole, before, across = attribute(
        samples, [("whole", 0, 12), ("before", 0, 3), ("across", 2.5, 10.5)]
    )
    assert whole.joules == pytest.approx(2 * 3 + 2 * 2)
    assert whole.partial is True
    assert whole.gaps == (Gap(3, 10, "gap"),)
    assert whole.covered_seconds == pytest.approx(5.0)
    assert whole.mean_watts == pytest.approx(2.0)
    assert before.joules == pytest.approx(6.0) and before.partial is False
    assert across.joules == pytest.approx(2.0 * 0.5 + 2.0 * 0.5)
    assert across.gaps == (Gap(3, 10, "gap"),)


def test_gap_factor_decides_what_is_a_gap():
    samples = series([(0, 2), (1, 2), (2, 2), (3, 2), (10, 2), (11, 2), (12, 2)])
    (e,) = attribute(samples, [("whole", 0, 12)], gap_factor=10)
    assert e.joules == pytest.approx(24.0)
    assert not e.partial
    (e,) = attribute(samples, [("whole", 0, 12)], gap_factor=7.0)  # 7 s is not > 7 x 1 s
    assert not e.partial
    with pytest.raises(ValueError):
        attribute(samples, [("x", 0, 1)], gap_factor=0)


def test_interval_beyond_the_samples_is_partial():
    first, last, both = attribute(RAMP, [("early", -1, 1), ("late", 3, 6), ("all", -1, 6)])
    assert first.joules == pytest.approx(1.5)
    assert first.gaps == (Gap(-1, 0, "no-data"),)
    assert last.joules == pytest.approx(4.5)
    assert last.gaps == (Gap(4, 6, "no-data"),)
    assert both.joules == pytest.approx(12.0)
    assert both.gaps == (Gap(-1, 0, "no-data"), Gap(4, 6, "no-data"))
    assert all(x.partial for x in (first, last, both))


def test_charging_samples_are_excluded():
    samples = series([(0, 2), (1, 2), (2, -5), (3, -5), (4, 2), (5, 2)], charging={2, 3})
    (e,) = attribute(samples, [("r", 0, 5)])
    # 0..1 and 4..5 count; 1..4 touches charging samples
    assert e.joules == pytest.approx(4.0)
    assert e.gaps == (Gap(1, 4, "charging"),)
    assert e.partial
    (raw,) = attribute(samples, [("r", 0, 5)], exclude_charging=False)
    assert raw.joules == pytest.approx(2 + (2 - 5) / 2 - 5 + (-5 + 2) / 2 + 2)


def test_degenerate_inputs():
    (e,) = attribute([], [("r", 0, 1)])
    assert e.joules == 0.0 and e.partial and e.gaps == (Gap(0, 1, "no-data"),)
    assert math.isnan(e.mean_watts)
    (one,) = attribute(series([(0.5, 3)]), [("r", 0, 1)])
    assert one.joules == 0.0 and one.partial and one.samples == 1
    with pytest.raises(ValueError, match="not after"):
        attribute(RAMP, [("bad", 2, 2)])
    assert median_period(series([(1, 1)])) is None
    assert find_gaps([]) == []


def test_duplicate_timestamps_do_not_break_integration():
    samples = series([(0, 2), (1, 2), (1, 4), (2, 4)])
    (e,) = attribute(samples, [("r", 0, 2)])
    assert e.joules == pytest.approx(2.0 + 4.0)


def test_intervals_as_objects_and_integrate_helper():
    class Round:
        def __init__(self, label, start, end):
            self.label, self.start, self.end = label, start, end

    (e,) = attribute(RAMP, [Round("r7", 1, 2)])
    assert (e.label, e.joules) == ("r7", pytest.approx(2.5))
    assert integrate(RAMP).joules == pytest.approx(12.0)
    assert integrate(RAMP, 1, 3).joules == pytest.approx(6.0)
    with pytest.raises(ValueError):
        integrate(RAMP[:1])


def test_square_wave_edge_errors_cancel_over_whole_periods():
    # 2 W for a second, 6 W for a second, repeated; samples every 0.25 s, steps on samples:
    # each rising edge is overestimated by 4 W x 0.25 s / 2 and each falling one
    # underestimated by as much
    period, dt = 2.0, 0.25
    pts = []
    for k in range(int(8 / dt) + 1):
        t = k * dt
        pts.append((t, 2.0 if (t % period) < 1.0 else 6.0))
    samples = series(pts)
    (e,) = attribute(samples, [("r", 0, 8)])
    exact = 4 * (2.0 + 6.0)
    assert e.joules == pytest.approx(exact)
    (first_rise,) = attribute(samples, [("rise", 0.0, 1.0)])
    assert first_rise.joules == pytest.approx(2.0 + 0.5)
