"""The objectives, in one table that the search, the bench, the reports and the command line
all read: a new objective is its `RunRecord` field, the code in `train/assemble.py` that fills
it, and one row here.

Each row says which record field a search trial is judged by (validation, never test), which
one a report's front shows (the test split's where there is one), whether larger is better,
how to print it, the best value any model could reach (the ideal corner of a hypervolume
box), and the value a trial gets that is never trained (the worst in its direction, so an
infeasible genome can never look good to a sampler).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["max", "min"]
UNTRAINED_COST = 1e9  # an untrained trial's memory, time or latency: far worse than any real one


@dataclass(frozen=True)
class Objective:
    name: str  # the command line's word (`--objectives accuracy,memory`)
    search_field: str  # the record field a search trial is judged by
    report_field: str  # the record field a report's front shows
    direction: Direction
    unit: str  # "%" for a fraction shown as a percentage
    label: str  # words for a table header or an axis
    ideal: float  # the best value any model could reach
    untrained: float  # the value of a trial that never trains

    @property
    def optuna_direction(self) -> str:
        return "maximize" if self.direction == "max" else "minimize"


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("accuracy", "val_accuracy", "test_accuracy", "max", "%", "accuracy", 1.0, 0.0),
        Objective("memory", "peak_above_baseline_mb", "peak_above_baseline_mb", "min", "MB",
                  "peak RSS above baseline", 0.0, UNTRAINED_COST),
        Objective("time", "epoch_s", "epoch_s", "min", "s", "training time per epoch", 0.0,
                  UNTRAINED_COST),
        Objective("latency", "infer_latency_ms_b1", "infer_latency_ms_b1", "min", "ms",
                  "inference latency at batch 1", 0.0, UNTRAINED_COST),
    )
}  # fmt: skip


def by_report_field(field: str) -> Objective | None:
    """The objective a report column belongs to (None for a record field that is none)."""
    return next((o for o in OBJECTIVES.values() if o.report_field == field), None)
