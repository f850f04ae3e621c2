"""Dominated-trial early stopping: Optuna prunes only single-objective studies, so this is ours.

After epoch k, a trial stops when some finished trial that needed no more memory was better at
the same epoch by more than `margin`: it cannot end on the front unless it overtakes a trial that
was ahead at every point of comparison so far. Trials younger than `min_epochs` always go on
(first epochs are noisy), and only finished (trained) trials are compared against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TrialCurve:
    """A finished trial as the rule sees it: validation accuracy after each epoch (index 0 =
    epoch 1) and its peak training memory above baseline."""

    val_accuracy: Sequence[float | None]
    peak_above_baseline_mb: float
    label: str = ""


def dominated_by(
    epoch: int,
    val_accuracy: float,
    peak_above_baseline_mb: float,
    finished: Sequence[TrialCurve],
    *,
    margin: float = 0.02,
    min_epochs: int = 2,
) -> TrialCurve | None:
    """The finished trial that dominates a running one at `epoch` (1-based), or None.

    Dominated means: that trial's memory <= ours and its validation accuracy at the same epoch
    >= ours + margin. Our memory is the peak so far (it only grows), so the comparison is fair
    to us; a trial that stopped before `epoch` is not compared.
    """
    if epoch < min_epochs:
        return None
    for other in finished:
        if len(other.val_accuracy) < epoch or other.val_accuracy[epoch - 1] is None:
            continue
        if (
            other.peak_above_baseline_mb <= peak_above_baseline_mb
            and other.val_accuracy[epoch - 1] >= val_accuracy + margin
        ):
            return other
    return None


def epochs_saved(planned: Sequence[int], trained: Sequence[int]) -> int:
    """Epochs not trained thanks to early stopping (planned minus trained, summed)."""
    return sum(max(p - t, 0) for p, t in zip(planned, trained, strict=True))
