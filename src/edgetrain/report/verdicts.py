"""Which configuration beats which: paired verdicts and the dominance table of one dataset.

- Verdicts: for each found architecture (a search's spec id, e.g. xc-f05a0c70e8) against each
  hand-made model, or, in a report without found ones, for every pair of configurations, the
  paired accuracy difference over the (seed, fold) pairs both ran (report/stats.py).
- Dominance: for each hand-made model, the leanest found model whose accuracy is not
  distinguishably worse (verdict better or not distinguishable), and its training memory (peak
  above baseline) as a share of the hand-made one's. It replaces a hypervolume ratio as the
  headline: it says what a user gains, in the unit a user has a budget in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from edgetrain.report.stats import Paired, accuracies_by_pair, paired_difference
from edgetrain.report.tables import SummaryRow

MEMORY_KEY = "peak_above_baseline_mb"


@dataclass(frozen=True)
class PairVerdict:
    a: str  # row labels
    b: str
    paired: Paired  # a - b


@dataclass(frozen=True)
class Dominance:
    hand_made: str
    hand_made_mb: float
    found: str | None  # None: no found model is at least as accurate
    found_mb: float
    verdict: str  # of found against hand_made
    mean_gain: float  # accuracy points (fraction), found - hand_made

    @property
    def memory_share(self) -> float:
        return self.found_mb / self.hand_made_mb if self.hand_made_mb > 0 else math.nan


def is_found(row: SummaryRow) -> bool:
    """A model that is not a registered hand-made one: a search's find (spec id or file)."""
    from edgetrain.models.registry import list_models

    return row.model not in list_models()


def verdicts(rows: Sequence[SummaryRow]) -> list[PairVerdict]:
    """Paired verdicts of the rows that ran at least 2 common (seed, fold) pairs."""
    acc = [accuracies_by_pair(r.records) for r in rows]
    found = [i for i, r in enumerate(rows) if is_found(r)]
    made = [i for i, r in enumerate(rows) if not is_found(r)]
    if found and made:
        pairs = [(i, j) for i in found for j in made]
    else:  # every pair, the more accurate first
        order = sorted(range(len(rows)), key=lambda i: -rows[i].mean("test_accuracy"))
        pairs = [(i, j) for k, i in enumerate(order) for j in order[k + 1 :]]
    out = []
    for i, j in pairs:
        paired = paired_difference(acc[i], acc[j])
        if paired.n >= 2:
            out.append(PairVerdict(rows[i].label, rows[j].label, paired))
    return out


def dominance(rows: Sequence[SummaryRow], found_verdicts: Sequence[PairVerdict]) -> list[Dominance]:
    """One row per hand-made model, when the rows hold found models (else empty)."""
    by_label = {r.label: r for r in rows}
    out = []
    for h in (r for r in rows if not is_found(r)):
        ok = [
            v
            for v in found_verdicts
            if v.b == h.label and v.paired.verdict in ("better", "not distinguishable")
        ]
        if not any(is_found(r) for r in rows):
            return []
        h_mb = h.mean(MEMORY_KEY)
        if not ok:
            out.append(Dominance(h.label, h_mb, None, math.nan, "", math.nan))
            continue
        best = min(ok, key=lambda v: by_label[v.a].mean(MEMORY_KEY))
        out.append(
            Dominance(
                h.label,
                h_mb,
                best.a,
                by_label[best.a].mean(MEMORY_KEY),
                best.paired.verdict,
                best.paired.mean,
            )
        )
    return out
