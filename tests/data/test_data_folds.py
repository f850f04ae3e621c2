"""Cross-validation folds: every image tested exactly once, groups never split, classes present,
deterministic, validation the next fold; bad K or fold refused with one line."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from edgetrain import EdgeTrainError
from edgetrain.cli import main
from edgetrain.data import resolve
from edgetrain.data.folds import assign_group_folds

SPLITS = ("train", "val", "test")


@pytest.fixture
def grouped(make_classes) -> str:
    # 7 boards ("g0".."g6") x 3 classes, 2-4 images per board and class
    counts = {}
    root = make_classes({"a": 1, "b": 1, "c": 1}, root="grouped")
    for f in root.rglob("*.jpg"):
        f.unlink()
    rng = np.random.default_rng(0)
    for cls in ("a", "b", "c"):
        for g in range(7):
            counts[(cls, g)] = int(rng.integers(2, 5))
    src = next(iter(make_classes({"x": 1}, root="one").rglob("*.jpg"))).read_bytes()
    for (cls, g), n in counts.items():
        for i in range(n):
            (root / cls / f"g{g}_{i}.jpg").write_bytes(src)
    return f"folder:{root}?group=^(g\\d+)_"


def _sources(splits, name):
    return {r.source for r in splits.split(name)}


def test_every_image_is_tested_once_and_groups_stay_whole(grouped):
    k = 3
    base = resolve(grouped)
    every = set().union(*(_sources(base, s) for s in SPLITS))
    tested = Counter()
    for i in range(k):
        sp = resolve(grouped, folds=k, fold=i)
        assert set().union(*(_sources(sp, s) for s in SPLITS)) == every
        for r in sp.test:
            tested[r.source] += 1
        # a group lies in one split only
        where = {s: set(sp.groups[s]) for s in SPLITS}
        assert not (where["train"] & where["test"]) and not (where["val"] & where["test"])
        assert not (where["train"] & where["val"])
        # every class in train, val and test (each board holds all three)
        for s in SPLITS:
            assert {r.label for r in sp.split(s)} == {0, 1, 2}
        # validation is the next fold's test set
        nxt = resolve(grouped, folds=k, fold=(i + 1) % k)
        assert _sources(sp, "val") == _sources(nxt, "test")
    assert set(tested) == every and set(tested.values()) == {1}


def test_folds_are_deterministic_and_follow_the_seed(grouped):
    a = resolve(grouped, folds=3, fold=1, seed=4)
    b = resolve(grouped, folds=3, fold=1, seed=4)
    assert a.groups == b.groups and _sources(a, "test") == _sources(b, "test")


def test_two_folds_carve_validation_from_the_training_fold(grouped):
    sp = resolve(grouped, folds=2, fold=0)
    assert sp.val and sp.train
    assert not set(sp.groups["val"]) & set(sp.groups["train"])
    other = resolve(grouped, folds=2, fold=1)
    assert _sources(sp, "val") | _sources(sp, "train") == _sources(other, "test")


def test_stratified_folds_without_groups():
    ref = "synthetic-pcb:per_class=10,size=32"
    tested = Counter()
    for i in range(5):
        sp = resolve(ref, folds=5, fold=i)
        per_class = Counter(r.label for r in sp.test)
        assert set(per_class.values()) == {2}  # 10 images per class over 5 folds
        assert len(sp.val) == 12 and len(sp.train) == 36
        tested.update(r.source for r in sp.test)
    assert len(tested) == 60 and set(tested.values()) == {1}


def test_group_folds_balance_sizes():
    counts = {f"g{i}": np.array([n, n]) for i, n in enumerate([9, 8, 5, 4, 3, 2, 1, 1])}
    where = assign_group_folds(counts, folds=3, seed=0)
    sizes = Counter()
    for g, f in where.items():
        sizes[f] += int(counts[g].sum())
    assert sorted(sizes.values()) == [22, 22, 22]


@pytest.mark.parametrize(
    ("folds", "fold", "message"),
    [
        (8, 0, "8 folds need at least 8 groups"),
        (1, 0, "folds must be 2"),
        (3, 3, "fold must be 0..2"),
    ],
)
def test_bad_folds_are_refused(grouped, folds, fold, message):
    with pytest.raises(EdgeTrainError, match=message):
        resolve(grouped, folds=folds, fold=fold)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--folds", "8"], "8 folds need at least 8 groups"),
        (["--folds", "1"], "folds must be"),
        (["--folds", "3", "--fold", "3"], "fold must be 0..2"),
        (["--fold", "1"], "fold needs folds"),
    ],
)
def test_train_refuses_bad_folds_before_anything_runs(grouped, tmp_path, capsys, args, message):
    out = tmp_path / "run"
    code = main(["train", "--model", "mobilenet_v2", "--data", grouped, "--out", str(out), *args])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_inspect_shows_the_folds(grouped, capsys):
    assert main(["data", "inspect", grouped, "--folds", "3", "--json"]) == 0
    import json

    summary = json.loads(capsys.readouterr().out)
    folds = summary["folds"]
    assert [f["fold"] for f in folds] == [0, 1, 2]
    assert sum(f["images"] for f in folds) == sum(summary["splits"].values())
    assert sorted(g for f in folds for g in f["groups"]) == [f"g{i}" for i in range(7)]


def test_a_trainval_test_layout_gets_validation_carved_from_trainval(make_classes, tmp_path):
    make_classes({"a": 16, "b": 16}, root="pub/trainval")
    make_classes({"a": 4, "b": 4}, root="pub/test")
    sp = resolve(f"folder:{tmp_path / 'pub'}")
    assert sp.classes == ["a", "b"]  # not "trainval" and "test"
    assert sp.counts() == {"train": 28, "val": 4, "test": 8}
    assert all("/trainval/" in r.source for r in sp.val)
    assert any("validation carved from the training images" in w for w in sp.warnings)


def test_split_folders_beside_class_folders_are_refused(make_classes, tmp_path):
    make_classes({"cats": 3, "test": 3}, root="mixed")
    with pytest.raises(EdgeTrainError, match=r"folders named like splits \(test\) beside"):
        resolve(f"folder:{tmp_path / 'mixed'}")
