"""The final round: the search's best candidates and the hand-made baselines, re-trained with
several seeds under the trials' protocol and budget, and tested on the test split.

Candidates come from the validation front of the search (never from test figures): trained,
feasible trials that no other trained trial dominates on the search's objectives, the most
accurate first. The round is a bench experiment (one model per candidate spec file and
baseline name, seeds 0..n-1) run by the bench's own queue in a study `<search study>-final`
of the same storage, so it resumes and spreads over workers like any bench.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from edgetrain.bench.experiments import Experiment
from edgetrain.errors import EdgeTrainError
from edgetrain.models.found import save_spec
from edgetrain.models.registry import spec_from_dict
from edgetrain.objectives import OBJECTIVES
from edgetrain.report.pareto import non_dominated
from edgetrain.search.study import Search

# RunConfig fields the final round's cells take from the protocol (the rest is the matrix's)
_MATRIX_FIELDS = {"model", "model_args", "data", "seed", "init", "extra"}
# fields that differ between the cells of one final round (the rest is the shared protocol)
_MODEL_FIELDS = {"model", "model_args", "seed"}


def trained_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Complete trials that trained (not infeasible, not a repeat of another trial)."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if "record" in t.user_attrs and "duplicate_of" not in t.user_attrs
    ]


def val_accuracy(trial: Any) -> float:
    return float(trial.user_attrs["record"].get("val_accuracy") or 0.0)


def candidates(study: optuna.Study, objectives: tuple[str, ...], top: int) -> list[Any]:
    """The `top` trials of the validation front, the most accurate first (distinct specs)."""
    trials = [t for t in trained_trials(study) if t.values and all(np.isfinite(t.values))]
    if not trials:
        return []
    dirs = [OBJECTIVES[o].direction for o in objectives]
    front = non_dominated(np.array([t.values for t in trials]), dirs)
    ranked = sorted(
        (t for t, on in zip(trials, front, strict=True) if on), key=lambda t: -val_accuracy(t)
    )
    seen, out = set(), []
    for t in ranked:
        if t.user_attrs["spec_id"] not in seen:
            seen.add(t.user_attrs["spec_id"])
            out.append(t)
    return out[:top]


def final_experiment(
    search: Search,
    picks: list[Any],
    baselines: tuple[str, ...],
    seeds: int,
    name: str,
    folds: int = 0,
) -> Experiment:
    """The bench experiment of the final round: candidate spec files + baseline names, over
    `seeds` seeds and, with `folds` K >= 2, K cross-validation folds (paired verdicts)."""
    # a candidate another worker trained has its spec in the study, not yet in our folder
    spec_files = [
        str(save_spec(spec_from_dict(t.user_attrs["spec"]), search.out / "specs")) for t in picks
    ]
    protocol = search.protocol.to_dict()
    run = {k: v for k, v in protocol.items() if k not in _MATRIX_FIELDS}
    run["memory_budget_mb"] = search.budget_mb
    return Experiment(
        name=name,
        description=f"final round of search {name.removesuffix('-final')}",
        models=(*spec_files, *baselines),
        datasets={"search": search.protocol.data},
        seeds=tuple(range(seeds)),
        init=("scratch",),
        run=run,
        folds=folds,
    )


def check_same_protocol(final: optuna.Study, ours: dict[str, Any]) -> None:
    """A final round shared by several searches must hold one protocol: the same data, training
    settings and budget in every cell, or its fronts would compare unlike runs."""
    theirs = next(
        (
            t.user_attrs["config"]
            for t in final.get_trials(deepcopy=False)
            if "config" in t.user_attrs
        ),
        None,
    )
    if theirs is None:
        return
    differ = sorted(k for k in ours.keys() - _MODEL_FIELDS if ours[k] != theirs.get(k))
    if differ:
        raise EdgeTrainError(
            f"the final round {final.study_name!r} holds runs of another protocol "
            f"({', '.join(differ)} differ): name another with --final-study"
        )


def run_final(search: Search, study: optuna.Study, exp: Experiment, console) -> Path:
    """Run the final experiment's cells (resumable) and return its output folder."""
    from edgetrain.bench.study import enqueue_cells, open_study, study_status
    from edgetrain.bench.work import work_cells

    storage = study._storage
    final = open_study(storage, exp.name, create=True)
    final.set_user_attr("experiment", exp.name)
    cells = exp.cells()
    check_same_protocol(final, cells[0].config.to_dict())
    enqueue_cells(final, cells)
    out = search.out / "final"
    out.mkdir(parents=True, exist_ok=True)
    # a shared final round also holds other searches' cells: the bar counts the whole study
    status = study_status(final)
    total = status["complete"] + status["waiting"] + status["running"]
    work_cells(final, storage, out, {}, console, total=total, wait=True)
    return out
