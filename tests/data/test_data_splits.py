"""Split rules: the paper's per-class floors, group-wise splits, determinism, layouts."""

from __future__ import annotations

import numpy as np
import pytest

from edgetrain.data import Record, resolve
from edgetrain.data.splits import assign_groups, split_by_group, split_per_class
from edgetrain.errors import EdgeTrainError


def _records(counts: list[int], groups: int | None = None) -> list[Record]:
    out = []
    for label, n in enumerate(counts):
        for i in range(n):
            g = f"g{i % groups}" if groups else None
            out.append(Record(source=f"c{label}/{i:04d}", label=label, group=g))
    return out


@pytest.mark.parametrize(
    ("n", "expected"),
    [(2, (1, 0, 1)), (9, (7, 0, 2)), (10, (8, 1, 1)), (31, (24, 3, 4)), (800, (640, 80, 80))],
)
def test_per_class_rule_uses_integer_floors(n: int, expected: tuple[int, int, int]) -> None:
    parts = split_per_class(_records([n, 2]), ["a", "b"], seed=0)
    got = tuple(sum(r.label == 0 for r in parts[s]) for s in ("train", "val", "test"))
    assert got == expected


def test_per_class_split_is_deterministic_for_a_seed_and_changes_with_it() -> None:
    recs = _records([40, 30])
    a = split_per_class(recs, ["a", "b"], seed=1)
    b = split_per_class(list(reversed(recs)), ["a", "b"], seed=1)  # input order does not matter
    c = split_per_class(recs, ["a", "b"], seed=2)
    assert a == b
    assert [r.source for r in a["test"]] != [r.source for r in c["test"]]
    assert {len(v) for v in a.values()} == {len(v) for v in c.values()}
    every = [r.source for part in a.values() for r in part]
    assert sorted(every) == sorted(r.source for r in recs)  # a partition: nothing lost or doubled


def test_adding_a_class_does_not_reshuffle_the_others() -> None:
    a = split_per_class(_records([20, 20]), ["a", "b"], seed=0)
    b = split_per_class(_records([20, 20, 20]), ["a", "b", "c"], seed=0)
    assert [r for r in a["test"] if r.label == 0] == [r for r in b["test"] if r.label == 0]


def test_group_split_keeps_each_group_in_one_split() -> None:
    recs = _records([50, 40, 30], groups=8)
    parts, groups = split_by_group(recs, ["a", "b", "c"], seed=0)
    where = {}
    for s, part in parts.items():
        for r in part:
            assert where.setdefault(r.group, s) == s
    assert set(groups["train"]) | set(groups["val"]) | set(groups["test"]) == set(where)
    assert sum(map(len, parts.values())) == len(recs)
    assert {r.label for r in parts["train"]} == {0, 1, 2}
    assert {r.label for r in parts["test"]} == {0, 1, 2}


def test_group_split_with_many_groups_is_near_80_10_10() -> None:
    recs = _records([400, 400, 400], groups=300)  # random search path (> 10 groups)
    parts, groups = split_by_group(recs, ["a", "b", "c"], seed=3)
    n = {s: len(p) for s, p in parts.items()}
    assert abs(n["train"] / 1200 - 0.8) < 0.03
    assert abs(n["test"] / 1200 - 0.1) < 0.03
    assert not set(groups["train"]) & set(groups["test"])
    again, _ = split_by_group(recs, ["a", "b", "c"], seed=3)
    assert again == parts


def test_two_groups_give_train_and_test_and_an_empty_val() -> None:
    where = assign_groups({"x": np.array([5, 5]), "y": np.array([1, 1])}, seed=0)
    assert sorted(where.values()) == ["test", "train"]
    assert where["x"] == "train"  # the bigger group trains


def test_one_group_cannot_be_split() -> None:
    with pytest.raises(EdgeTrainError, match="at least 2"):
        assign_groups({"only": np.array([3, 3])}, seed=0)


def test_folder_per_class_layout(make_classes) -> None:
    root = make_classes({"cat": 10, "dog": 12})
    s = resolve(f"folder:{root}", seed=0)
    assert s.classes == ["cat", "dog"]
    assert s.counts() == {"train": 8 + 9, "val": 1 + 1, "test": 1 + 2}
    assert s.groups == {}
    assert all(r.size == (40, 30) and r.mode == "RGB" for r in s.train)


def test_folder_given_split_layout_is_used_as_is(make_classes) -> None:
    make_classes({"0": 6, "1": 5}, root="bin/train")
    make_classes({"0": 2, "1": 2}, root="bin/val")
    root = make_classes({"0": 3, "1": 1}, root="bin/test")
    s = resolve(f"folder:{root.parent}")
    assert s.classes == ["0", "1"]
    assert s.counts() == {"train": 11, "val": 4, "test": 4}


def test_folder_given_split_reports_groups_that_leak(make_classes) -> None:
    make_classes({"a": 3, "b": 3}, root="g/train", name="{i:02d}_x.jpg")
    root = make_classes({"a": 2, "b": 2}, root="g/test", name="{i:02d}_y.jpg")
    s = resolve(rf"folder:{root.parent}?group=^(\d+)_")
    assert s.groups["test"] == ["00", "01"]
    assert any("more than one of the given splits" in w for w in s.warnings)


def test_folder_grouped_split_by_file_name(make_classes) -> None:
    root = make_classes({"a": 30, "b": 30}, name="{i:02d}_{cls}.jpg")
    # group = i // 3 (files 00-02 share group "0", ...): ten groups of six files
    s = resolve(rf"folder:{root}?group=^(\d)\d_")
    seen = {}
    for split in ("train", "val", "test"):
        for r in s.split(split):
            assert seen.setdefault(r.group, split) == split
    assert sum(s.counts().values()) == 60
    assert set(s.groups["train"]).isdisjoint(s.groups["test"])


def test_synthetic_resolves_balanced_classes() -> None:
    s = resolve("synthetic-pcb:per_class=20", seed=0)
    assert len(s.classes) == 6
    assert s.counts() == {"train": 96, "val": 12, "test": 12}
    assert s.name == "synthetic-pcb:per_class=20"
    assert resolve(s.name, seed=0).test == s.test
