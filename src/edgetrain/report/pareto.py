"""Pareto fronts and hypervolume: pure NumPy functions over an (n_points, n_objectives) array.

Every function takes `directions`, one of "max" / "min" per objective (column), and works
internally on minimisation by flipping the sign of "max" columns. Rows with a NaN in any objective
are never on the front and never add to a hypervolume.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Direction = Literal["max", "min"]


def _as_minimisation(
    values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[Direction]
) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float array with "max" columns negated, and the sign vector used (+1 min, -1 max)."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, len(directions))
    if arr.ndim != 2:
        raise ValueError(f"values must be a 2-D array (points x objectives), got shape {arr.shape}")
    if arr.shape[1] != len(directions):
        raise ValueError(f"{arr.shape[1]} objective columns but {len(directions)} directions")
    bad = [d for d in directions if d not in ("max", "min")]
    if bad:
        raise ValueError(f"directions must be 'max' or 'min', got {bad}")
    sign = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    return arr * sign, sign


def non_dominated(
    values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[Direction]
) -> np.ndarray:
    """Boolean mask of the rows of `values` that no other row dominates.

    Row j dominates row i when j is at least as good in every objective and strictly better in at
    least one, "good" meaning larger for a "max" column and smaller for a "min" column. Identical
    rows do not dominate each other, so duplicates of a front point are all on the front. A row
    with a NaN in any column is never on the front and dominates nothing. O(n^2) comparisons,
    which is plenty for the tens to hundreds of configurations of a benchmark.
    """
    v, _ = _as_minimisation(values, directions)
    n = v.shape[0]
    finite = ~np.isnan(v).any(axis=1)
    mask = np.zeros(n, dtype=bool)
    if not finite.any():
        return mask
    f = v[finite]  # (m, d)
    # le[j, i]: row j is <= row i everywhere; lt[j, i]: strictly < somewhere
    le = (f[:, None, :] <= f[None, :, :]).all(axis=2)
    lt = (f[:, None, :] < f[None, :, :]).any(axis=2)
    dominated = (le & lt).any(axis=0)
    mask[np.flatnonzero(finite)] = ~dominated
    return mask


def _hv_min(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume of minimisation `points` (all strictly below `ref`) by slicing."""
    if points.shape[0] == 0:
        return 0.0
    d = points.shape[1]
    if d == 1:
        return float(ref[0] - points[:, 0].min())
    if d == 2:
        # sweep along x: each point adds the strip between its y and the best y seen so far
        order = np.lexsort((points[:, 1], points[:, 0]))
        hv, best_y = 0.0, ref[1]
        for x, y in points[order]:
            if y < best_y:
                hv += (ref[0] - x) * (best_y - y)
                best_y = y
        return float(hv)
    # d >= 3: slice along the last objective; between consecutive levels the cross-section is the
    # (d-1)-dimensional hypervolume of every point at or below the slab's lower level
    last = points[:, -1]
    levels = np.unique(last)
    uppers = np.append(levels[1:], ref[-1])
    hv = 0.0
    for lower, upper in zip(levels, uppers, strict=True):
        below = points[last <= lower, :-1]
        below = below[non_dominated(below, ["min"] * (d - 1))]
        hv += _hv_min(below, ref[:-1]) * (upper - lower)
    return float(hv)


def hypervolume(
    values: np.ndarray | Sequence[Sequence[float]],
    directions: Sequence[Direction],
    reference: Sequence[float] | np.ndarray,
) -> float:
    """Exact hypervolume dominated by `values` and bounded by the `reference` point.

    The hypervolume is the measure of the region of objective space that is worse than at least
    one point and better than the reference in every objective: larger is better, and adding a
    dominated point never changes it. Points that do not strictly beat the reference in every
    objective, and rows with NaN, contribute nothing. Exact for any number of objectives: a sweep
    in 2-D and slicing along the last objective above that (fine for 3 objectives and the point
    counts of a benchmark; exponential in the number of objectives). Units are the product of the
    objectives' units (e.g. accuracy x MB).
    """
    v, sign = _as_minimisation(values, directions)
    ref = np.asarray(reference, dtype=float)
    if ref.shape != (len(directions),):
        raise ValueError(f"reference must have {len(directions)} values, got shape {ref.shape}")
    if np.isnan(ref).any():
        raise ValueError(f"reference point contains NaN: {ref.tolist()}")
    ref = ref * sign
    keep = ~np.isnan(v).any(axis=1) & (v < ref).all(axis=1)
    pts = v[keep]
    if pts.shape[0] == 0:
        return 0.0
    pts = pts[non_dominated(pts, ["min"] * len(directions))]
    return _hv_min(pts, ref)


def default_reference(
    values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[Direction]
) -> np.ndarray:
    """The report's reference point: a little worse than the worst value observed per objective.

    For a "max" objective whose values are all >= 0 (accuracy, F1) the reference is 0, the worst
    possible score. For a "min" objective (memory, time) it is 1.1 x the worst (largest) value
    observed, so the worst point still adds a visible slab; if that value is <= 0 it is the worst
    value + 10 % of its magnitude (or + 1 when it is exactly 0). A "max" objective with negative
    values mirrors the "min" rule. NaNs are ignored; a column with no finite value gives NaN.
    """
    v, sign = _as_minimisation(values, directions)
    ref = np.full(len(directions), np.nan)
    for k, direction in enumerate(directions):
        col = v[:, k]
        col = col[~np.isnan(col)]
        if col.size == 0:
            continue
        worst = float(col.max())  # in minimisation terms
        if direction == "max" and worst <= 0:  # all original values >= 0
            ref[k] = 0.0
        elif worst > 0:
            ref[k] = 1.1 * worst
        elif worst < 0:
            ref[k] = worst + 0.1 * abs(worst)
        else:
            ref[k] = 1.0
    return ref * sign + 0.0  # + 0.0: no -0.0 for a flipped zero
