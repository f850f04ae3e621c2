"""`edgetrain search` from start to end: check everything, search, re-train the best candidates
and the hand-made baselines with several seeds, report.

1. Checks before anything trains: the space (empty, contradictory), the objectives, the budget
   (the leanest genome of the space must be predicted to fit), the data (a validation split).
2. The search: an Optuna study in `--storage` (SQLite in `--out` by default), trials as in
   `study.py`, until `--trials` trials are complete or `--time-budget` has passed.
3. The final round: the top candidates of the validation front and the baselines, each with
   `--final-seeds` seeds, through the bench's machinery (a study `<name>-final`, one fresh
   process per run, the same budget), tested on the test split for the first time.
4. The report (`report.py`): both fronts on test accuracy and memory, their hypervolumes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from edgetrain.bench.study import open_storage, study_lock
from edgetrain.data import resolve
from edgetrain.errors import EdgeTrainError
from edgetrain.search.feasibility import BaselineModel, data_bytes, predict
from edgetrain.search.space import SearchSpace, space_from_dict, space_to_dict
from edgetrain.search.study import (
    GENOME_ERRORS,
    Search,
    error_reason,
    learn_baseline,
    make_sampler,
    objective,
    retry_interrupted,
)
from edgetrain.train.config import RunConfig

# The trials' protocol unless `--set run.KEY=VALUE` says otherwise: sized for a search on a small
# CPU (the benchmark: 64 px, a few epochs), recalibrated BatchNorm for short runs.
PROTOCOL_DEFAULTS: dict[str, Any] = {
    "resolution": 64,
    "epochs": 6,
    "batch_size": 16,
    "lr": 1e-3,
    "optimizer": "adam",
    "bn_recalibration_images": 512,
    "latency_repeat": 5,
    # the short-run recipe that converged best on the PKU crops (benchmarks/recipe.py, 3 seeds,
    # 64 px, 6 epochs): seed sd 1.0-1.5 points instead of 1.8-3.2, means +0.2 to +2.5 points
    "lr_schedule": "cosine",
    "warmup_epochs": 1,
    "ema_decay": 0.998,
}


@dataclass(frozen=True)
class SearchRequest:
    """What the user asked for, checked (`cli.py` builds it from the command line)."""

    space: SearchSpace
    data: str
    budget_mb: float
    objectives: tuple[str, ...]
    trials: int
    time_budget_s: float | None
    sampler: str
    seed: int
    out: Path
    storage: str | None
    study_name: str
    final_study: str
    run_overrides: dict[str, Any]
    baselines: tuple[str, ...]
    top: int
    final_seeds: int
    final_folds: int
    stop_margin: float
    stop_min_epochs: int


def prepare_search(req: SearchRequest, emit) -> Search:
    """Resolve the data and check that the budget can hold the leanest genome, before any
    training; returns the shared `Search` of every trial."""
    protocol = RunConfig.from_dict(
        {**PROTOCOL_DEFAULTS, **req.run_overrides, "model": req.space.base, "data": req.data}
    )
    splits = resolve(req.data, seed=protocol.split_seed)
    counts = splits.counts()
    if not counts.get("val"):
        raise EdgeTrainError(
            f"{req.data}: no validation split; the search selects on validation accuracy and "
            "never on the test split"
        )
    search = Search(
        space=req.space, protocol=protocol, budget_mb=req.budget_mb, objectives=req.objectives,
        out=req.out, num_classes=len(splits.classes), train_images=counts["train"],
        baseline=BaselineModel(data_mb=data_bytes(counts, protocol.resolution) / 2**20),
        stop_margin=req.stop_margin, stop_min_epochs=req.stop_min_epochs, emit=emit,
    )  # fmt: skip
    _check_budget(search, emit)
    return search


def leanest_genome(space: SearchSpace) -> dict[str, Any]:
    """Every gene at its smallest numeric choice (its first one otherwise): the genome to try
    against the budget first."""

    def least(choices: tuple[Any, ...]) -> Any:
        nums = [c for c in choices if isinstance(c, int | float) and not isinstance(c, bool)]
        return min(nums) if len(nums) == len(choices) else choices[0]

    return {g.name: least(g.choices) for g in space.genes}


def _check_budget(search: Search, emit) -> None:
    genome = leanest_genome(search.space)
    try:
        config = search.config_for(genome)
        p, _ = predict(config, search.num_classes, search.budget_mb, search.baseline)
    except GENOME_ERRORS as exc:  # every trial would fail the same way: stop before them
        raise EdgeTrainError(
            f"the leanest genome of space {search.space.name} ({genome}) cannot be probed: "
            f"{error_reason(exc)}"
        ) from None
    emit(
        f"leanest genome of {search.space.name}: predicted peak {p.predicted_peak_mb:.0f} MB "
        f"(budget {search.budget_mb:.0f} MB, {p.seconds:.1f} s to predict)"
    )
    if not p.feasible:
        raise EdgeTrainError(
            f"nothing in space {search.space.name} fits a budget of {search.budget_mb:.0f} MB: "
            f"even its leanest genome is predicted to peak at {p.predicted_peak_mb:.0f} MB "
            f"({p.predicted_baseline_mb:.0f} MB before training). Give a larger budget, a lower "
            "resolution (--set run.resolution=...) or a smaller space."
        )


def open_search_study(req: SearchRequest, search: Search) -> optuna.Study:
    storage = open_storage(req.storage or f"sqlite:///{(req.out / 'search.db').resolve()}")
    with study_lock(storage, req.study_name):
        study = optuna.create_study(
            storage=storage, study_name=req.study_name, directions=search.directions,
            sampler=make_sampler(req.sampler, req.seed, len(req.objectives)), load_if_exists=True,
        )  # fmt: skip
    if study.trials:  # resumed: a fresh random stream, not the first generation again
        study.sampler = make_sampler(req.sampler, req.seed + len(study.trials), len(req.objectives))
    _check_same_search(study, describe(req, search))
    if list(study.directions) != [
        optuna.study.StudyDirection[d.upper()] for d in search.directions
    ]:
        raise EdgeTrainError(
            f"study {req.study_name!r} was started with other objectives; use another --study"
        )
    study.set_user_attr("search", describe(req, search))
    learn_baseline(search, study)
    return study


def _check_same_search(study: optuna.Study, now: dict[str, Any]) -> None:
    """A resumed study must search what it searched before (the trial count may grow)."""
    before = study.user_attrs.get("search")
    if not isinstance(before, dict):
        return
    keys = ("space_def", "protocol", "budget_mb", "objectives")
    changed = [k for k in keys if before.get(k) != now.get(k)]
    if changed:
        raise EdgeTrainError(
            f"study {study.study_name!r} searched with other settings ({', '.join(changed)} "
            "differ); resume it with the same command, or start a new one with another --study "
            "or --out"
        )


def describe(req: SearchRequest, search: Search) -> dict[str, Any]:
    """The study's record of what it searches (for workers, the report and a later resume)."""
    return {
        "space": req.space.name,
        "base": req.space.base,
        "genes": {g.name: list(g.choices) for g in req.space.genes},
        "space_def": space_to_dict(req.space),
        "protocol": search.protocol.to_dict(),
        "budget_mb": req.budget_mb,
        "objectives": list(req.objectives),
        "sampler": req.sampler,
        "seed": req.seed,
        "trials": req.trials,
        "stop_margin": req.stop_margin,
        "stop_min_epochs": req.stop_min_epochs,
    }


def request_from_study(study: optuna.Study, out: Path, data: str | None) -> SearchRequest:
    """The request a worker on another machine continues: everything from the study, but its
    own output folder and, if given, its own path to the data."""
    info = study.user_attrs.get("search")
    if not isinstance(info, dict) or "space_def" not in info:
        raise EdgeTrainError(f"study {study.study_name!r} is not an edgetrain search")
    protocol = dict(info["protocol"])
    return SearchRequest(
        space=space_from_dict(info["space_def"], f"study {study.study_name}"),
        data=data or protocol["data"], budget_mb=float(info["budget_mb"]),
        objectives=tuple(info["objectives"]), trials=int(info["trials"]),
        time_budget_s=time_left_s(study),
        sampler=info["sampler"], seed=int(info["seed"]), out=out, storage=None,
        study_name=study.study_name, final_study=default_final_study(study.study_name),
        run_overrides=_protocol_overrides(protocol),
        baselines=(), top=0, final_seeds=0, final_folds=0, stop_margin=float(info["stop_margin"]),
        stop_min_epochs=int(info["stop_min_epochs"]),
    )  # fmt: skip


def _protocol_overrides(protocol: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in protocol.items() if k not in ("model", "model_args", "data")}


DEADLINE_ATTR = "deadline_unix_s"


def default_final_study(study_name: str) -> str:
    return f"{study_name}-final"


def set_deadline(study: optuna.Study, time_budget_s: float | None) -> None:
    """Workers that join stop starting trials when this invocation's time budget is spent."""
    study.set_user_attr(DEADLINE_ATTR, time.time() + time_budget_s if time_budget_s else None)


def time_left_s(study: optuna.Study) -> float | None:
    """Seconds left of the time budget of the search's latest invocation; None: no budget."""
    deadline = study.user_attrs.get(DEADLINE_ATTR)
    return None if deadline is None else float(deadline) - time.time()


def search_loop(req: SearchRequest, search: Search, study: optuna.Study, on_trial) -> None:
    """Run trials until `req.trials` are complete in the study (all workers together) or the
    time budget has passed; a trial's error fails that trial and the search goes on. Trials
    an earlier Ctrl-C stopped run first, in their run directories."""
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if done >= req.trials or (req.time_budget_s is not None and req.time_budget_s <= 0):
        return
    retried = retry_interrupted(study)
    if retried:
        search.emit(f"{retried} trial(s) stopped by Ctrl-C before: run again first, resuming")
    failures = _FailureLimit()
    with _one_line_trial_failures():
        study.optimize(
            lambda t: objective(search, t),
            timeout=req.time_budget_s,
            callbacks=[
                MaxTrialsCallback(req.trials, states=(TrialState.COMPLETE,)),
                on_trial,
                failures,
            ],
            catch=(EdgeTrainError,),
            gc_after_trial=True,
        )
    if failures.stopped:
        raise EdgeTrainError(
            f"{failures.limit} trials in a row failed; the last: {failures.last_error}. "
            "The search stopped: fix the cause (see the run directories' train.log) and run "
            "the same command again to go on"
        )


class _TrialFailureFilter(logging.Filter):
    """Optuna logs a failed trial with its traceback. Ctrl-C is the user's own act (the command
    says "interrupted", once): from it on, the unwinding logs nothing. Our errors carry their
    whole story in one line: their traceback goes."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = False

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        self.interrupted = self.interrupted or isinstance(exc, KeyboardInterrupt)
        if isinstance(exc, EdgeTrainError):
            record.exc_info, record.exc_text = None, None
        return not self.interrupted


@contextlib.contextmanager
def _one_line_trial_failures() -> Iterator[None]:
    # a filter on the handlers sees the records that Optuna's modules pass up to its logger
    handlers = logging.getLogger("optuna").handlers
    quiet = _TrialFailureFilter()
    for h in handlers:
        h.addFilter(quiet)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(quiet)


class _FailureLimit:
    """Stops the study after `limit` failed trials in a row (a broken setting fails them all)."""

    def __init__(self, limit: int = 3) -> None:
        self.limit, self.in_a_row, self.stopped, self.last_error = limit, 0, False, ""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state != TrialState.FAIL:
            self.in_a_row = 0
            return
        self.in_a_row += 1
        reason = trial.user_attrs.get("error") or trial.system_attrs.get("fail_reason", "unknown")
        self.last_error = str(reason)[:300]
        if self.in_a_row >= self.limit:
            self.stopped = True
            study.stop()


def elapsed(t0: float) -> str:
    s = time.monotonic() - t0
    return f"{s / 60:.1f} min"


def run_search_worker(study: optuna.Study, storage, out: Path, data: dict[str, str]) -> int:
    """`edgetrain worker` on a search study: join the search until its trial count is reached
    (`--data search=REF` gives this machine's path to the data)."""
    from rich.console import Console

    console = Console()
    req = request_from_study(study, out, data.get("search"))
    out.mkdir(parents=True, exist_ok=True)
    search = prepare_search(req, console.print)
    sampler = make_sampler(req.sampler, req.seed + os.getpid(), len(req.objectives))
    study = optuna.load_study(study_name=study.study_name, storage=storage, sampler=sampler)
    learn_baseline(search, study)
    if req.time_budget_s is not None and req.time_budget_s <= 0:
        console.print("the search's time budget is spent: this worker starts no trial")
    search_loop(req, search, study, lambda *_: None)
    console.print(f"worker finished: the study has {len(study.trials)} trials")
    return 0
