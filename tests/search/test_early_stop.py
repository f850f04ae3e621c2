"""Dominated-trial early stopping on hand-made histories."""

from __future__ import annotations

from edgetrain.search.early_stop import TrialCurve, dominated_by, epochs_saved

LEAN_GOOD = TrialCurve([0.30, 0.60, 0.80, 0.90], peak_above_baseline_mb=300, label="lean")
FAT_GOOD = TrialCurve([0.40, 0.70, 0.85, 0.95], peak_above_baseline_mb=900, label="fat")


def test_stops_when_a_leaner_trial_was_better_at_the_same_epoch():
    assert dominated_by(2, 0.50, 400, [LEAN_GOOD, FAT_GOOD]) is LEAN_GOOD


def test_goes_on_when_only_heavier_trials_were_better():
    assert dominated_by(2, 0.50, 250, [LEAN_GOOD, FAT_GOOD]) is None


def test_margin_protects_close_calls():
    assert dominated_by(3, 0.79, 400, [LEAN_GOOD], margin=0.02) is None
    assert dominated_by(3, 0.77, 400, [LEAN_GOOD], margin=0.02) is LEAN_GOOD


def test_never_before_min_epochs_nor_against_shorter_curves():
    assert dominated_by(1, 0.0, 999, [LEAN_GOOD], min_epochs=2) is None
    short = TrialCurve([0.9, 0.9], peak_above_baseline_mb=10)
    assert dominated_by(3, 0.1, 999, [short]) is None
    missing = TrialCurve([0.9, None, 0.9], peak_above_baseline_mb=10)
    assert dominated_by(2, 0.1, 999, [missing]) is None


def test_equal_memory_counts_as_no_more_memory():
    assert dominated_by(4, 0.5, 300, [LEAN_GOOD]) is LEAN_GOOD


def test_epochs_saved():
    assert epochs_saved([6, 6, 6], [6, 2, 3]) == 7
