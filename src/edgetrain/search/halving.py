"""Asynchronous successive halving over epochs for a multi-objective search: many genomes are
seen at low cost, few are trained to the end. Optuna's pruners serve single-objective studies
only, so this rule is ours, a pure function as `early_stop` is.

Every trial is planned for the full number of epochs (so a learning-rate schedule is the same
whether or not a trial is promoted) and pauses at each rung (e.g. after epochs 1 and 2 of 6). A
trial paused at rung r is promoted, i.e. its run continues from its checkpoint, when it ranks in
the best `keep` share of all trials that reached rung r so far (asynchronous halving: no waiting
for a full batch, which a sequential search on one machine could never fill). The rank is a
non-dominated sort of (signal at the rung, higher better; predicted peak memory, lower better),
so a lean genome with a fair score is kept beside a big one with a better score; within one front
the higher signal goes first. Fewer than 1/keep trials at a rung promote nobody yet.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgetrain.report.pareto import non_dominated

MAX_RUNGS = 8


@dataclass(frozen=True)
class RungEntry:
    """One trial as seen at one rung: its signal there and its predicted peak memory."""

    key: str
    signal: float  # higher is better (e.g. validation accuracy after the rung's epochs)
    memory_mb: float  # lower is better (the planner's predicted peak above baseline)


def parse_rungs(text: str, epochs: int) -> tuple[int, ...]:
    """'1,2' with epochs=6 -> (1, 2): the epochs after which trials pause, strictly increasing,
    each in 1..epochs-1. An empty text means no halving (every trial trains to the end)."""
    if not text.strip():
        return ()
    try:
        rungs = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise ValueError(f"rungs must be comma-separated epoch numbers, got {text!r}") from None
    if len(rungs) > MAX_RUNGS:
        raise ValueError(f"at most {MAX_RUNGS} rungs, got {len(rungs)}")
    if any(b <= a for a, b in itertools.pairwise(rungs)):
        raise ValueError(f"rungs must increase strictly, got {text!r}")
    if rungs[0] < 1 or rungs[-1] >= epochs:
        raise ValueError(f"rungs must lie in 1..{epochs - 1} (the trial trains {epochs} epochs)")
    return rungs


def rank_order(entries: Sequence[RungEntry]) -> list[str]:
    """Keys best first: by non-dominated front (signal max, memory min), then signal, then key
    (so the order is total and deterministic). NaN signals come last."""
    left = list(entries)
    order: list[str] = []
    while left:
        values = np.array([[e.signal, e.memory_mb] for e in left], dtype=float)
        mask = non_dominated(values, ("max", "min"))
        if not mask.any():  # only NaN rows remain
            mask[:] = True
        front = [e for e, m in zip(left, mask, strict=True) if m]
        front.sort(key=lambda e: (-_finite(e.signal), e.key))
        order += [e.key for e in front]
        left = [e for e, m in zip(left, mask, strict=True) if not m]
    return order


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def promotable(
    rungs: Mapping[int, Sequence[RungEntry]], promoted: Mapping[int, set[str]], keep: float
) -> tuple[str, int] | None:
    """The (key, rung) to promote next, or None (then a new genome should start).

    `rungs[r]`: every trial that reached rung index r; `promoted[r]`: those already promoted out
    of it. Higher rungs are served first (finishing a good trial beats starting a new one). At
    rung r, the best floor(n * keep) of its n entries may be promoted.
    """
    if not 0 < keep < 1:
        raise ValueError(f"keep must be in (0, 1), got {keep}")
    for r in sorted(rungs, reverse=True):
        entries = rungs[r]
        best = rank_order(entries)[: math.floor(len(entries) * keep + 1e-9)]
        for key in best:
            if key not in promoted.get(r, set()):
                return key, r
    return None
