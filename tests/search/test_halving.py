"""The successive-halving rule on hand-made curves."""

from __future__ import annotations

import math

import pytest

from edgetrain.search.halving import RungEntry, parse_rungs, promotable, rank_order


def test_parse_rungs() -> None:
    assert parse_rungs("1,2", 6) == (1, 2)
    assert parse_rungs(" ", 6) == ()
    for bad in ("2,1", "0,2", "1,6", "a", "1,,2"):
        with pytest.raises(ValueError):
            parse_rungs(bad, 6)


def test_rank_order_is_by_front_then_signal() -> None:
    # D dominates B (better and as lean), A dominates C; front 1 = {A, D}, front 2 = {B, C}
    entries = [
        RungEntry("A", 0.90, 100),
        RungEntry("B", 0.80, 50),
        RungEntry("C", 0.70, 200),
        RungEntry("D", 0.85, 50),
        RungEntry("E", math.nan, 10),
    ]
    assert rank_order(entries) == ["A", "D", "B", "C", "E"]


def test_promotes_the_best_third_and_serves_higher_rungs_first() -> None:
    two = [RungEntry("a", 0.5, 10), RungEntry("b", 0.6, 10)]
    assert promotable({0: two}, {}, 1 / 3) is None  # fewer than 3: nobody yet
    three = [*two, RungEntry("c", 0.4, 10)]
    assert promotable({0: three}, {}, 1 / 3) == ("b", 0)
    assert promotable({0: three}, {0: {"b"}}, 1 / 3) is None
    six = [*three, RungEntry("d", 0.7, 10), RungEntry("e", 0.1, 10), RungEntry("f", 0.2, 10)]
    assert promotable({0: six}, {0: {"b"}}, 1 / 3) == ("d", 0)  # top 2 of 6 = d, b
    rung1 = [RungEntry("b", 0.65, 10), RungEntry("x", 0.9, 10), RungEntry("y", 0.3, 10)]
    assert promotable({0: six, 1: rung1}, {0: {"b"}}, 1 / 3) == ("x", 1)


def _simulate(finals: list[float], rungs: tuple[int, ...], epochs: int) -> tuple[int, set[str]]:
    """Run the asynchronous loop over genomes whose accuracy after epoch k is final * k/epochs:
    returns the epochs spent and the genomes trained to the end."""
    at: dict[int, list[RungEntry]] = {}
    promoted: dict[int, set[str]] = {}
    done: set[str] = set()
    spent, fresh = 0, iter(range(len(finals)))

    def run_to(key: str, level: int, start: int) -> int:
        stop = rungs[level] if level < len(rungs) else epochs
        i = int(key)
        if level < len(rungs):
            at.setdefault(level, []).append(RungEntry(key, finals[i] * stop / epochs, 10.0))
        else:
            done.add(key)
        return stop - start

    while True:
        nxt = promotable(at, promoted, 1 / 3)
        if nxt is not None:
            key, r = nxt
            promoted.setdefault(r, set()).add(key)
            spent += run_to(key, r + 1, rungs[r])
            continue
        i = next(fresh, None)
        if i is None:
            return spent, done
        spent += run_to(str(i), 0, 0)


def test_halving_trains_the_best_to_the_end_for_a_fraction_of_the_epochs() -> None:
    finals = [0.50, 0.91, 0.62, 0.70, 0.55, 0.88, 0.40, 0.75, 0.60]
    spent, done = _simulate(finals, (1, 2), 6)
    # 9 genomes x 1 epoch, 3 promoted to epoch 2 (+1 each), 1 of those to the end (+4)
    assert spent == 9 + 3 + 4
    assert done == {"1"}  # the most accurate, 0.91
    assert spent < 0.4 * 9 * 6
