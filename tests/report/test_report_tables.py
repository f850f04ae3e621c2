"""Grouping, statistics, formatting and the Pareto analysis of summary rows."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from edgetrain.report.tables import (
    OBJECTIVES_MEMORY,
    OBJECTIVES_MEMORY_TIME,
    Stat,
    dataset_label,
    format_stat,
    init_label,
    pareto_front,
    row_cells,
    summarize,
)


def test_groups_by_dataset_model_init(make_record) -> None:
    records = [
        make_record("xception", seed=0, acc=0.90),
        make_record("xception", seed=1, acc=0.92),
        make_record("xception", seed=0, acc=0.95, init="/runs/caltech/run-1"),
        make_record("xception", seed=0, data="caltech101:/data/101", acc=0.7),
        make_record("mobilenet_v2", seed=0),
    ]
    by_dataset = summarize(records)
    assert list(by_dataset) == ["caltech101:/data/101", "synthetic-pcb"]
    rows = by_dataset["synthetic-pcb"]
    assert [(r.model, r.init, r.n_runs) for r in rows] == [
        ("mobilenet_v2", "scratch", 1),
        ("xception", "run-1", 1),
        ("xception", "scratch", 2),
    ]
    two = rows[2]
    assert two.seeds == (0, 1)
    assert two.stats["test_accuracy"].mean == pytest.approx(0.91)
    assert two.stats["test_accuracy"].sd == pytest.approx(statistics.stdev([0.90, 0.92]))


def test_sample_sd_shown_only_for_more_than_one_run(make_record) -> None:
    one = summarize([make_record(acc=0.9)])["synthetic-pcb"][0]
    assert one.stats["test_accuracy"].sd is None
    assert "±" not in " ".join(row_cells(one))
    three = summarize([make_record(seed=s, acc=a) for s, a in enumerate((0.8, 0.9, 1.0))])
    row = three["synthetic-pcb"][0]
    assert row.stats["test_accuracy"].sd == pytest.approx(0.1)  # n - 1: sqrt(0.02 / 2)
    assert format_stat(row.stats["test_accuracy"], "percent") == "90.0 ± 10.0"
    # params are equal across seeds: no "± 0"
    assert format_stat(row.stats["params_trainable"], "count") == "2,353,253"


def test_missing_and_non_finite_values_are_left_out(make_record) -> None:
    recs = [make_record(seed=0), make_record(seed=1, test_macro_f1=None, macs=float("nan"))]
    recs[0].pop("macs")
    row = summarize(recs)["synthetic-pcb"][0]
    assert row.stats["test_macro_f1"].n == 1
    assert row.stats["macs"].n == 0
    assert format_stat(row.stats["macs"], "millions") == "–"


def test_labels(make_record) -> None:
    assert init_label(make_record()) == "scratch"
    assert init_label(make_record(init="/r/caltech-xception")) == "caltech-xception"
    assert init_label(make_record(init="/r/caltech-xception/best.pt")) == "caltech-xception"
    assert init_label(make_record(init="/r/pre", train_scope="head")) == "pre, head"
    rec = make_record(init="/r/run-abc")
    rec["config"]["extra"] = {"init_label": "caltech101"}
    assert init_label(rec) == "caltech101"
    assert dataset_label(make_record(dataset="PCB (paper)")) == "PCB (paper)"
    assert dataset_label(make_record(data="folder:/x")) == "folder:/x"
    bench = make_record(data="caltech101:/data/101_ObjectCategories")
    bench["config"]["extra"] = {"experiment": "paper-caltech101", "dataset": "caltech101"}
    assert dataset_label(bench) == "caltech101"


def test_number_formats() -> None:
    assert format_stat(Stat(1234.4, None, 1), "number") == "1,234"
    assert format_stat(Stat(12.34, 0.56, 2), "number") == "12.3 ± 0.6"
    assert format_stat(Stat(0.123, None, 1), "number") == "0.12"
    assert format_stat(Stat(25_000_000, 0.0, 2), "millions") == "25.0"
    assert format_stat(Stat(0.8766, None, 1), "fraction") == "0.877"


def test_pareto_front_on_rows(quick_records) -> None:
    rows = summarize(quick_records)["synthetic-pcb"]
    names = [r.model for r in rows]
    front2 = pareto_front(rows, OBJECTIVES_MEMORY)
    front3 = pareto_front(rows, OBJECTIVES_MEMORY_TIME)
    on2 = {n for n, m in zip(names, front2.mask, strict=True) if m}
    on3 = {n for n, m in zip(names, front3.mask, strict=True) if m}
    assert on2 == {"xception", "xception_lite", "mobilenet_v2"}
    assert on3 == on2 | {"efficientnet_v2_b1"}
    # default reference: accuracy 0, worst mean memory / time x 1.1
    assert front2.reference.tolist() == pytest.approx([0.0, 905.0 * 1.1])
    assert front3.reference[2] == pytest.approx(40.25 * 1.1)
    assert front2.reference_given == (False, False)
    assert front2.hypervolume > 0 and 0 < front2.hv_share < 1


def test_pareto_front_fixed_reference(quick_records) -> None:
    rows = summarize(quick_records)["synthetic-pcb"]
    front = pareto_front(rows, OBJECTIVES_MEMORY, {"peak_above_baseline_mb": 2000.0})
    assert front.reference.tolist() == [0.0, 2000.0]
    assert front.reference_given == (False, True)
    # a fixed reference beyond the default one adds the strip between them
    default = pareto_front(rows, OBJECTIVES_MEMORY)
    best_acc = np.nanmax(front.values[:, 0])
    assert front.hypervolume == pytest.approx(
        default.hypervolume + best_acc * (2000.0 - 905.0 * 1.1)
    )


def test_rows_without_objectives_are_not_on_the_front(make_record) -> None:
    rows = summarize([make_record("a", acc=0.99, peak_above_baseline_mb=None), make_record("b")])[
        "synthetic-pcb"
    ]
    front = pareto_front(rows, OBJECTIVES_MEMORY)
    assert front.mask.tolist() == [False, True]
