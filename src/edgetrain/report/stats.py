"""Verdicts with statistics: paired differences over the same folds and seeds, and runs that did
not learn.

Why paired: two models trained on the same fold with the same seed see the same test images
and the same data order, so most of what moves one model's accuracy from fold to fold moves the
other's too. The difference per (seed, fold) pair removes that shared part; its mean and a
Student-t 95 % confidence interval over the pairs say whether A beats B:
- better: the interval lies above 0; worse: below 0; otherwise not distinguishable.
- fewer than 2 pairs: no interval, no verdict ("too few pairs").
The t-interval assumes the pair differences are roughly normal; with 10 pairs (5 folds x 2 seeds)
it is the usual choice, and scipy computes the quantile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Verdict = Literal["better", "worse", "not distinguishable", "too few pairs"]
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Paired:
    """A - B over the pairs both have: mean difference, its 95 % interval and the verdict."""

    n: int  # pairs
    mean: float  # mean of A - B (NaN without pairs)
    sd: float | None  # sample sd of the differences (n - 1); None for n < 2
    low: float | None  # the interval's bounds; None for n < 2
    high: float | None
    verdict: Verdict


def paired_difference(a: Mapping[Any, float], b: Mapping[Any, float]) -> Paired:
    """Compare A and B on the keys (e.g. (seed, fold)) they share; other keys are ignored."""
    keys = sorted(set(a) & set(b), key=repr)
    diffs = np.array([float(a[k]) - float(b[k]) for k in keys], dtype=float)
    diffs = diffs[np.isfinite(diffs)]
    n = len(diffs)
    if n < 2:
        mean = float(diffs.mean()) if n else math.nan
        return Paired(n, mean, None, None, None, "too few pairs")
    from scipy import stats

    mean, sd = float(diffs.mean()), float(diffs.std(ddof=1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df=n - 1)) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    verdict: Verdict = "better" if low > 0 else "worse" if high < 0 else "not distinguishable"
    return Paired(n, mean, sd, low, high, verdict)


def pair_key(record: Mapping[str, Any]) -> tuple[int, int, int]:
    """What makes two runs a pair: the same seed, fold and split seed."""
    config = record.get("config")
    config = config if isinstance(config, Mapping) else {}
    return (
        _int(config.get("seed")),
        _int(config.get("fold")) if config.get("folds") else -1,
        _int(config.get("split_seed")),
    )


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def accuracies_by_pair(records: Sequence[Mapping[str, Any]]) -> dict[tuple[int, int, int], float]:
    """{(seed, fold, split seed): test accuracy} of one configuration's runs."""
    out = {}
    for r in records:
        acc = r.get("test_accuracy")
        if isinstance(acc, int | float) and not isinstance(acc, bool) and math.isfinite(acc):
            out[pair_key(r)] = float(acc)
    return out


def did_not_learn(record: Mapping[str, Any]) -> str | None:
    """Why a run did not learn, or None: test accuracy within noise of chance (below chance +
    2 binomial standard errors of the test split), or a training loss never below ln K (what
    predicting the uniform distribution scores)."""
    classes = record.get("classes")
    k = len(classes) if isinstance(classes, list) and len(classes) >= 2 else 0
    if not k:
        return None
    chance = 1.0 / k
    counts = record.get("split_counts")
    n_test = counts.get("test") if isinstance(counts, Mapping) else None
    acc = record.get("test_accuracy")
    if isinstance(acc, int | float) and isinstance(n_test, int) and n_test > 0:
        noise = 2 * math.sqrt(chance * (1 - chance) / n_test)
        if acc <= chance + noise:
            return (
                f"test accuracy {100 * acc:.1f} % is within noise of chance ({100 * chance:.1f} %)"
            )
    history = record.get("history")
    losses = (
        [
            h.get("train_loss")
            for h in history
            if isinstance(h, Mapping) and isinstance(h.get("train_loss"), int | float)
        ]
        if isinstance(history, list)
        else []
    )
    if losses and min(losses) >= math.log(k):
        return f"training loss never fell below ln {k} = {math.log(k):.2f}"
    return None
