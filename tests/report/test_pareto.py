"""Pareto mask and hypervolume on cases small enough to check by hand."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from edgetrain.report.pareto import default_reference, hypervolume, non_dominated

# --- non_dominated --------------------------------------------------------------------------------


def test_non_dominated_mixed_directions() -> None:
    # (accuracy max, memory min)
    v = [[0.9, 900], [0.8, 500], [0.7, 600], [0.95, 1000], [0.8, 700]]
    mask = non_dominated(v, ["max", "min"])
    assert mask.tolist() == [True, True, False, True, False]


def test_non_dominated_direction_is_a_sign_flip() -> None:
    rng = np.random.default_rng(0)
    v = rng.integers(0, 5, size=(30, 3)).astype(float)
    flipped = v * np.array([-1, 1, -1])
    assert np.array_equal(
        non_dominated(v, ["min", "min", "min"]), non_dominated(flipped, ["max", "min", "max"])
    )


def test_duplicates_are_all_non_dominated() -> None:
    v = [[1, 1], [1, 1], [2, 2], [0, 3]]
    assert non_dominated(v, ["min", "min"]).tolist() == [True, True, False, True]


def test_equal_in_one_objective_better_in_other_dominates() -> None:
    assert non_dominated([[1, 1], [1, 2]], ["min", "min"]).tolist() == [True, False]


def test_nan_rows_are_never_on_front_and_dominate_nothing() -> None:
    v = [[np.nan, 0.0], [1.0, 1.0], [0.0, np.nan], [2.0, 2.0]]
    assert non_dominated(v, ["min", "min"]).tolist() == [False, True, False, False]
    assert non_dominated([[np.nan, np.nan]], ["min", "max"]).tolist() == [False]


def test_empty_and_single() -> None:
    assert non_dominated(np.empty((0, 2)), ["max", "min"]).shape == (0,)
    assert non_dominated([[3.0, 4.0]], ["max", "min"]).tolist() == [True]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="directions"):
        non_dominated([[1, 2]], ["max"])
    with pytest.raises(ValueError, match="'max' or 'min'"):
        non_dominated([[1, 2]], ["max", "up"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="reference"):
        hypervolume([[1, 2]], ["min", "min"], [3, 3, 3])


# --- hypervolume, by hand -------------------------------------------------------------------------


def test_hypervolume_2d_unit_boxes() -> None:
    mm = ["min", "min"]
    assert hypervolume([[0, 0]], mm, [1, 1]) == 1.0
    # staircase: [0,1]x[0.5,1] U [0.5,1]x[0,1] = 0.5 + 0.5 - 0.25
    assert hypervolume([[0, 0.5], [0.5, 0]], mm, [1, 1]) == pytest.approx(0.75)
    # three unit steps under ref (3, 3): 3 + 2 + 1
    assert hypervolume([[0, 2], [1, 1], [2, 0]], mm, [3, 3]) == pytest.approx(6.0)


def test_hypervolume_2d_max_min() -> None:
    # accuracy 0.5 (max) at 1 MB (min), reference accuracy 0, 2 MB -> 0.5 x 1
    assert hypervolume([[0.5, 1.0]], ["max", "min"], [0.0, 2.0]) == pytest.approx(0.5)
    # a second point: accuracy 0.8 at 1.5 MB adds (0.8 - 0.5) x (2 - 1.5)
    assert hypervolume([[0.5, 1.0], [0.8, 1.5]], ["max", "min"], [0.0, 2.0]) == pytest.approx(
        0.5 + 0.15
    )
    # both maximised: boxes from the reference up to the point
    assert hypervolume([[2, 3]], ["max", "max"], [1, 1]) == pytest.approx(2.0)


def test_hypervolume_3d_by_hand() -> None:
    mmm = ["min"] * 3
    assert hypervolume([[0, 0, 0]], mmm, [1, 1, 1]) == 1.0
    assert hypervolume([[0, 0, 0]], mmm, [2, 3, 4]) == 24.0
    # inclusion-exclusion: three boxes of 4, pairwise overlaps of 2, triple overlap of 1
    pts = [[0, 0, 1], [0, 1, 0], [1, 0, 0]]
    assert hypervolume(pts, mmm, [2, 2, 2]) == pytest.approx(3 * 4 - 3 * 2 + 1)
    # (accuracy max, memory min, time min)
    v = [[0.9, 2.0, 3.0], [0.6, 1.0, 1.0]]
    expected = 0.9 * 2 * 1 + 0.6 * 3 * 3 - 0.6 * 2 * 1  # box A + box B - overlap = 6.0
    assert hypervolume(v, ["max", "min", "min"], [0.0, 4.0, 4.0]) == pytest.approx(expected)


def test_hypervolume_ignores_dominated_points_and_duplicates() -> None:
    rng = np.random.default_rng(1)
    for d in (2, 3):
        front = rng.random((6, d))
        ref = np.full(d, 1.5)
        base = hypervolume(front, ["min"] * d, ref)
        dominated = front[rng.integers(0, 6, 10)] + rng.random((10, d)) * 0.3
        more = np.vstack([front, dominated, front])  # dominated points and exact duplicates
        assert hypervolume(more, ["min"] * d, ref) == pytest.approx(base, rel=1e-12)


def test_points_not_strictly_better_than_reference_add_nothing() -> None:
    mm = ["min", "min"]
    assert hypervolume([[1, 0]], mm, [1, 1]) == 0.0  # on the reference's boundary
    assert hypervolume([[5, 5]], mm, [1, 1]) == 0.0  # worse than the reference
    assert hypervolume([[0, 0], [0, 5]], mm, [1, 1]) == 1.0
    assert hypervolume([[0.0, 0.5]], ["max", "min"], [0.0, 1.0]) == 0.0  # accuracy 0 = reference
    assert hypervolume(np.empty((0, 3)), ["min"] * 3, [1, 1, 1]) == 0.0


def test_nan_rows_add_nothing() -> None:
    assert hypervolume([[0, 0], [np.nan, -5]], ["min", "min"], [1, 1]) == 1.0
    with pytest.raises(ValueError, match="NaN"):
        hypervolume([[0, 0]], ["min", "min"], [1, np.nan])


def _grid_hypervolume(points: np.ndarray, ref: np.ndarray) -> int:
    """Count the unit cells of the integer grid below `ref` that some point dominates (min)."""
    count = 0
    for cell in itertools.product(*(range(int(r)) for r in ref)):
        centre = np.array(cell) + 0.5
        if any((p <= centre).all() for p in points):
            count += 1
    return count


@pytest.mark.parametrize("d", [2, 3])
def test_hypervolume_matches_grid_count_on_integer_points(d: int) -> None:
    rng = np.random.default_rng(d)
    for _ in range(25):
        pts = rng.integers(0, 6, size=(rng.integers(1, 9), d)).astype(float)
        ref = np.full(d, 6.0)
        assert hypervolume(pts, ["min"] * d, ref) == _grid_hypervolume(pts, ref)


def test_hypervolume_matches_optuna() -> None:
    # Optuna's hypervolume module is private; its public plot_hypervolume_history draws the
    # hypervolume after each trial, so the last value of the line is the hypervolume of them all.
    optuna = pytest.importorskip("optuna")
    from optuna.trial import create_trial
    from optuna.visualization.matplotlib import plot_hypervolume_history

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(7)
    cases = [
        (["maximize", "minimize"], ["max", "min"]),
        (["maximize"] + ["minimize"] * 2, ["max", "min", "min"]),
    ]
    for optuna_dirs, dirs in cases:
        values = rng.random((12, len(dirs))) * np.array([1.0, 800.0, 40.0][: len(dirs)])
        ref = default_reference(values, dirs)
        study = optuna.create_study(directions=optuna_dirs)
        for v in values:
            study.add_trial(create_trial(values=v.tolist()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ax = plot_hypervolume_history(study, reference_point=ref.tolist())
        theirs = ax.get_lines()[0].get_ydata()[-1]
        assert hypervolume(values, dirs, ref) == pytest.approx(theirs, rel=1e-9)


# --- default reference ----------------------------------------------------------------------------


def test_default_reference() -> None:
    v = [[0.9, 100.0, 10.0], [0.5, 200.0, 5.0], [np.nan, 50.0, np.nan]]
    ref = default_reference(v, ["max", "min", "min"])
    assert ref.tolist() == pytest.approx([0.0, 220.0, 11.0])
    assert str(ref[0]) == "0.0"  # not -0.0
    # every non-NaN point strictly beats the default reference, so each one counts
    assert hypervolume(v, ["max", "min", "min"], ref) > 0


def test_default_reference_edge_cases() -> None:
    assert default_reference([[-2.0, -4.0]], ["max", "min"]).tolist() == pytest.approx([-2.2, -3.6])
    assert default_reference([[3.0, 0.0]], ["max", "min"]).tolist() == pytest.approx([0.0, 1.0])
    assert np.isnan(default_reference([[np.nan, 1.0]], ["max", "min"])[0])
