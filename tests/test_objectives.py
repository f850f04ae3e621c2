"""The objective table: a new objective is one row (plus its record field and the code that
fills it), and every consumer — the search's parser, directions, values and untrained values,
the final round's ranking, the report's wording — picks it up from there."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import edgetrain.objectives as objectives
from edgetrain.objectives import UNTRAINED_COST, Objective
from edgetrain.report import render
from edgetrain.search.feasibility import BaselineModel
from edgetrain.search.study import Search, parse_objectives
from edgetrain.train.config import RunConfig

MADE_UP = (
    Objective("params", "params_total", "params_total", "min", "", "parameters", 0.0,
              UNTRAINED_COST),
    Objective("f1", "val_macro_f1", "test_macro_f1", "max", "%", "macro-F1", 1.0, 0.0),
)  # fmt: skip


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> None:
    for row in MADE_UP:
        monkeypatch.setitem(objectives.OBJECTIVES, row.name, row)


def _search(tmp_path: Path, names: tuple[str, ...]) -> Search:
    protocol = RunConfig(model="mobilenet_v2", data="synthetic-pcb", batch_size=4)
    return Search(space=None, protocol=protocol, budget_mb=1000.0, objectives=names,  # type: ignore[arg-type]
                  out=tmp_path, num_classes=2, train_images=8,
                  baseline=BaselineModel(data_mb=0.0))  # fmt: skip


def test_a_made_up_objective_is_one_row(table: None, tmp_path: Path) -> None:
    names = parse_objectives("accuracy,params,f1")
    search = _search(tmp_path, names)
    assert search.directions == ["maximize", "minimize", "maximize"]
    record = SimpleNamespace(val_accuracy=0.9, params_total=1234, val_macro_f1=0.8)
    assert search.values_of(record) == [0.9, 1234.0, 0.8]  # type: ignore[arg-type]
    # never trained: each objective's worst, so a maximised one is not handed the best value
    p = SimpleNamespace(predicted_above_baseline_mb=10.0, predicted_step_s=0.1)
    assert search.infeasible_values(p) == [0.0, UNTRAINED_COST, 0.0]  # type: ignore[arg-type]
    assert render._obj_name("params_total") == "parameters"
    assert render._obj_unit("test_macro_f1") == "%"


def test_unknown_objectives_are_refused_by_the_table() -> None:
    from edgetrain.errors import EdgeTrainError

    with pytest.raises(EdgeTrainError, match="accuracy, memory, time, latency"):
        parse_objectives("accuracy,params")
