"""The one mean-accuracy definition: every selected device, the silent ones carried forward."""

from __future__ import annotations

import math

import pytest

from htfl.workstation.accuracy import AccuracyLedger


def test_a_device_that_does_not_reply_keeps_its_last_accuracy() -> None:
    ledger = AccuracyLedger()
    first = ledger.record([("weak", 0.2, 100), ("strong", 0.8, 100)])
    assert first.mean == pytest.approx(0.5) and first.carried == ()
    # the weak device drops out: a replied-only mean would jump to 0.9
    second = ledger.record([("weak", None, None), ("strong", 0.9, 100)])
    assert second.mean == pytest.approx(0.55)
    assert second.carried == ("weak",) and second.evaluated == 1


def test_the_mean_is_weighted_by_test_samples() -> None:
    ledger = AccuracyLedger()
    assert ledger.record([("a", 1.0, 30), ("b", 0.0, 10)]).mean == pytest.approx(0.75)


def test_a_round_without_evaluations_has_no_mean() -> None:
    ledger = AccuracyLedger()
    ledger.record([("a", 0.5, 10)])
    nothing = ledger.record([("a", None, None), ("b", math.nan, 10)])
    assert nothing.mean is None and nothing.evaluated == 0


def test_a_device_never_evaluated_is_not_counted() -> None:
    ledger = AccuracyLedger()
    only = ledger.record([("a", 0.4, 10), ("b", None, None)])
    assert only.mean == pytest.approx(0.4) and only.carried == ()


def test_a_device_no_longer_selected_does_not_count() -> None:
    ledger = AccuracyLedger()
    ledger.record([("a", 0.1, 10), ("b", 0.9, 10)])
    assert ledger.record([("b", 0.7, 10)]).mean == pytest.approx(0.7)


def test_a_resumed_run_carries_forward_the_accuracy_its_earlier_rows_recorded() -> None:
    """``htfl run --resume``: the round loop primes its ledger from rounds.csv, so a device
    silent in the first resumed round still counts with the accuracy it had before the crash."""
    from htfl.workstation.server.round_loop import prime_accuracy

    ledger = AccuracyLedger()
    rows = [
        {"round": "1", "device": "a", "test_accuracy": "0.2", "num_test": "10"},
        {"round": "1", "device": "b", "test_accuracy": "0.6", "num_test": "30"},
        {"round": "2", "device": "a", "test_accuracy": "0.4", "num_test": "10"},
        {"round": "2", "device": "b", "test_accuracy": "", "num_test": ""},
    ]
    prime_accuracy(ledger, rows)
    after = ledger.record([("a", 0.8, 10), ("b", None, None)])
    assert after.carried == ("b",)
    assert after.mean == pytest.approx((0.8 * 10 + 0.6 * 30) / 40)
