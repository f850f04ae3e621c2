"""Paired verdicts on hand-computed cases, runs that did not learn, protocols kept apart, and the
dominance table in the report."""

from __future__ import annotations

import math

import pytest

from edgetrain.report.render import write_report
from edgetrain.report.stats import did_not_learn, paired_difference
from edgetrain.report.tables import pareto_front, summarize
from edgetrain.report.verdicts import dominance, verdicts

T_975_DF2 = 4.302652729911275  # Student t, 97.5 % quantile, 2 degrees of freedom (tables)


def test_paired_difference_by_hand():
    a = {1: 0.90, 2: 0.80, 3: 0.85, 9: 0.1}  # key 9 has no partner: ignored
    b = {1: 0.80, 2: 0.75, 3: 0.80}
    p = paired_difference(a, b)
    # differences 0.10, 0.05, 0.05: mean 1/15, sd sqrt(((1/30)^2 + 2 (1/60)^2) / 2)
    mean = 0.2 / 3
    sd = math.sqrt(((0.1 - mean) ** 2 + 2 * (0.05 - mean) ** 2) / 2)
    half = T_975_DF2 * sd / math.sqrt(3)
    assert p.n == 3 and p.mean == pytest.approx(mean) and p.sd == pytest.approx(sd)
    assert p.low == pytest.approx(mean - half) and p.high == pytest.approx(mean + half)
    assert p.low < 0 < p.high and p.verdict == "not distinguishable"


def test_paired_verdicts_better_worse_and_too_few():
    a = {k: 0.9 + 0.01 * (k % 2) for k in range(6)}
    b = {k: 0.8 + 0.012 * (k % 2) for k in range(6)}  # same fold effects, 10 points lower
    assert paired_difference(a, b).verdict == "better"
    assert paired_difference(b, a).verdict == "worse"
    one = paired_difference({0: 0.9}, {0: 0.8})
    assert one.verdict == "too few pairs" and one.low is None and one.mean == pytest.approx(0.1)


def test_a_run_near_chance_did_not_learn(make_record):
    six = [f"c{i}" for i in range(6)]
    chance = make_record(acc=0.183, classes=six, split_counts={"test": 120})
    assert "within noise of chance" in did_not_learn(chance)
    good = make_record(acc=0.6, classes=six, split_counts={"test": 120})
    assert did_not_learn(good) is None
    flat = make_record(acc=0.6, classes=six)
    for h in flat["history"]:
        h["train_loss"] = 1.9  # ln 6 = 1.79
    assert "never fell below ln 6" in did_not_learn(flat)


def test_a_configuration_that_did_not_learn_is_never_on_the_front(make_record):
    six = [f"c{i}" for i in range(6)]
    records = [
        make_record(
            "xception", acc=0.9, peak_above_mb=500, classes=six, split_counts={"test": 120}
        ),
        # leanest by far, but at chance: it would dominate on memory
        make_record(
            "mobilenet_v2", acc=0.18, peak_above_mb=50, classes=six, split_counts={"test": 120}
        ),
    ]
    rows = summarize(records)["synthetic-pcb"]
    front = pareto_front(rows, [("test_accuracy", "max"), ("peak_above_baseline_mb", "min")])
    flags = {r.model: (bool(front.mask[i]), r.not_learned) for i, r in enumerate(rows)}
    assert flags["xception"] == (True, None)
    assert flags["mobilenet_v2"][0] is False and "chance" in flags["mobilenet_v2"][1]


def test_runs_of_different_protocols_never_share_a_group(make_record):
    a = make_record("xception", epochs=3)
    b = make_record("xception", epochs=2)
    b["config"]["resolution"] = 48
    by_dataset = summarize([a, b])
    assert sorted(by_dataset) == [
        "synthetic-pcb [48 px, 2 epochs]",
        "synthetic-pcb [64 px, 3 epochs]",
    ]


def _fold_records(make_record, model, accs, mb):
    out = []
    for (seed, fold), acc in accs.items():
        r = make_record(model, seed=seed, acc=acc, peak_above_mb=mb)
        r["config"].update(folds=3, fold=fold)
        out.append(r)
    return out


def test_dominance_table_and_report(make_record, tmp_path):
    keys = [(s, f) for s in (0, 1) for f in range(3)]
    effect = {k: 0.02 * k[1] for k in keys}  # fold difficulty shared by every model
    records = (
        _fold_records(make_record, "xception_lite", {k: 0.85 + effect[k] for k in keys}, 440)
        + _fold_records(make_record, "mobilevit_xxs", {k: 0.80 + effect[k] for k in keys}, 106)
        + _fold_records(
            make_record,
            "xc-f05a0c70e8",
            {k: 0.86 + effect[k] + 0.004 * (k[0] - 0.5) for k in keys},
            216,
        )
    )
    rows = summarize(records)["synthetic-pcb"]
    found = verdicts(rows)
    pairs = {(v.a, v.b): v.paired for v in found}
    assert set(pairs) == {("xc-f05a0c70e8", "xception_lite"), ("xc-f05a0c70e8", "mobilevit_xxs")}
    assert pairs[("xc-f05a0c70e8", "mobilevit_xxs")].verdict == "better"
    assert pairs[("xc-f05a0c70e8", "xception_lite")].n == 6
    table = {d.hand_made: d for d in dominance(rows, found)}
    assert table["xception_lite"].found == "xc-f05a0c70e8"
    assert table["xception_lite"].memory_share == pytest.approx(216 / 440)
    assert table["mobilevit_xxs"].found == "xc-f05a0c70e8"

    written = write_report(records, tmp_path / "report", title="verdicts")
    text = written["md"].read_text()
    assert "Paired verdicts" in text and "Dominance" in text
    assert "49 %" in text  # 216 / 440
