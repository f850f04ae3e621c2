"""The search as an Optuna study: the sampler proposes genomes, each trial is predicted, then
(when feasible) trained in a fresh process through the bench's storage.

Optuna does the search (`study.optimize` with NSGA-II by default and `constraints_func`); its
storage is the results store and the work queue, so more machines join with `edgetrain worker`
on the same `--storage`. Heartbeats fail a dead worker's trial and Optuna's retry callback puts
its genome back in the queue; a trial stopped by Ctrl-C is put back the same way when the search
runs again (`retry_interrupted`). The retried trial trains into the same run directory (named by
the run config's id) and so resumes. A genome proposed again is never trained again: the trial
copies the values of the finished one. A genome that cannot be built, probed or timed is stored
as infeasible with its reason (`error`), and the search goes on.

Trial user attributes: genome, spec_id, spec (the family-tagged dict), run_id, prediction,
constraint (predicted whole-process peak minus the budget, MB: <= 0 is feasible), infeasible,
record (the RunRecord dict of a trained trial), duplicate_of, error, interrupted.
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from edgetrain.bench.study import study_lock
from edgetrain.errors import EdgeTrainError
from edgetrain.models.found import save_spec
from edgetrain.objectives import OBJECTIVES
from edgetrain.search.early_stop import TrialCurve, dominated_by
from edgetrain.search.feasibility import BaselineModel, Prediction, predict
from edgetrain.search.space import SearchSpace
from edgetrain.train.config import RunConfig
from edgetrain.train.precision import resolve_precision
from edgetrain.train.record import RunRecord
from edgetrain.train.rundir import RunDir

SAMPLERS = ("nsga2", "tpe", "gp", "random")
NSGA2_POPULATION = 10


def parse_objectives(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown or not names or len(set(names)) != len(names):
        raise EdgeTrainError(
            f"--objectives: {text!r} is not a comma-separated list of distinct objectives out of "
            f"{', '.join(OBJECTIVES)}" + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    if "accuracy" not in names:
        raise EdgeTrainError("--objectives must include accuracy")
    return names


# Optuna >= 5 reads constraints a trial sets itself (`Trial.set_constraint`); before, a sampler
# takes a `constraints_func`. Both see the same number: predicted peak minus budget, MB.
_TRIAL_CONSTRAINTS = hasattr(Trial, "set_constraint")
# a trial retried after a crash inherits its genome's constraint; the one set again is the same
# genome's prediction (set once per process: catching warnings per call is not thread-safe)
warnings.filterwarnings("ignore", message="The constraint value is ignored", category=UserWarning)


def make_sampler(name: str, seed: int, objectives: int) -> optuna.samplers.BaseSampler:
    """The sampler, seeded; infeasible trials (constraint > 0) rank below feasible ones."""
    kw: dict[str, Any] = {} if _TRIAL_CONSTRAINTS else {"constraints_func": constraint_of}
    if name == "nsga2":
        # Optuna's default generation of 50 random genomes is a whole small-CPU search; 10
        # starts selecting after ten trials
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=NSGA2_POPULATION, **kw)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **kw)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, **kw)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise EdgeTrainError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")


def constraint_of(trial: FrozenTrial) -> list[float]:
    # a trial that failed before its prediction has none: count it as feasible, it has no values
    return list(trial.user_attrs.get("constraint", [0.0]))


def _set_constraint(trial: Trial, excess_mb: float) -> None:
    trial.set_user_attr("constraint", [excess_mb])
    if _TRIAL_CONSTRAINTS:
        trial.set_constraint("memory_budget", excess_mb)


@dataclass
class Search:
    """What every trial of one search shares (saved in the study's user attributes)."""

    space: SearchSpace
    protocol: RunConfig  # the trials' training protocol; model and model_args are set per trial
    budget_mb: float
    objectives: tuple[str, ...]
    out: Path
    num_classes: int
    train_images: int
    baseline: BaselineModel
    stop_margin: float = 0.02
    stop_min_epochs: int = 2
    emit: Callable[[str], None] = lambda _msg: None
    runner: Callable[..., RunRecord] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o].optuna_direction for o in self.objectives]

    def config_for(self, genome: dict[str, Any]) -> RunConfig:
        spec = self.space.spec_of(genome)
        return self.protocol.replace(
            model=spec.id,
            model_args=spec.to_dict(family=True),
            memory_budget_mb=self.budget_mb,
            **self.space.run_fields(genome),
        )

    def values_of(self, record: RunRecord) -> list[float]:
        # the validation split's figures (`search_field`), never the test split's
        return [float(getattr(record, OBJECTIVES[o].search_field)) for o in self.objectives]

    def infeasible_values(self, p: Prediction) -> list[float]:
        """Values stored for a genome that is never trained: what the probe predicted where it
        predicts the objective (memory, time), the objective's untrained value elsewhere."""
        steps = math.ceil(self.train_images / self.protocol.batch_size)
        predicted = {"memory": p.predicted_above_baseline_mb, "time": p.predicted_step_s * steps}
        return [predicted.get(o, OBJECTIVES[o].untrained) for o in self.objectives]


# --- one trial ---------------------------------------------------------------------------------

# What turning a genome into a spec, predicting it or probing it raises when the architecture
# cannot exist or cannot be built: our refusals (a crashed probe process included), torch's
# allocation and shape errors, Python's numeric limits. Such a genome is infeasible, not a
# broken search; anything else is a bug and fails the trial.
GENOME_ERRORS: tuple[type[BaseException], ...] = (
    EdgeTrainError, RuntimeError, MemoryError, ArithmeticError, ValueError,
)  # fmt: skip
INTERRUPTED_ATTR = "interrupted"  # set on a trial stopped by Ctrl-C: the next run retries it


def objective(search: Search, trial: Trial) -> list[float]:
    """A trial's values. A training that fails fails the trial, its reason kept in `error`; a
    trial stopped by Ctrl-C is marked for `retry_interrupted`."""
    try:
        return _evaluate(search, trial)
    except EdgeTrainError as exc:
        trial.set_user_attr("error", error_reason(exc))
        raise
    except KeyboardInterrupt:
        trial.set_user_attr(INTERRUPTED_ATTR, True)
        raise


def _evaluate(search: Search, trial: Trial) -> list[float]:
    genome = {
        g.name: trial.suggest_categorical(g.name, list(g.choices)) for g in search.space.genes
    }
    trial.set_user_attr("genome", genome)
    try:
        config = search.config_for(genome)
    except GENOME_ERRORS as exc:  # no spec, so nothing to probe or train
        return _infeasible(search, trial, f"genome {genome}", "cannot be built", exc)
    for name, value in (("spec_id", config.model), ("run_id", config.id)):
        trial.set_user_attr(name, value)
    trial.set_user_attr("spec", config.model_args)
    twin = _finished_twin(
        search.space, trial.study, _genome_key(search.space, genome), trial.number
    )
    if twin is not None:  # proposed again: the values are known, nothing trains
        for key in ("record", "prediction", "infeasible", "error"):
            if key in twin.user_attrs:
                trial.set_user_attr(key, twin.user_attrs[key])
        _set_constraint(trial, constraint_of(twin)[0])
        trial.set_user_attr("duplicate_of", twin.number)
        search.emit(f"trial {trial.number}: {config.model} again (as trial {twin.number})")
        return list(twin.values)
    try:
        prediction, model_rss_mb = predict(
            config, search.num_classes, search.budget_mb, search.baseline
        )
    except GENOME_ERRORS as exc:  # the probe cannot build or run it: as good as infeasible
        return _infeasible(search, trial, config.model, "cannot be probed", exc)
    # the probe's RSS lets a later process learn the baseline offset from this trial too
    trial.set_user_attr("prediction", {**prediction.to_dict(), "model_rss_mb": model_rss_mb})
    _set_constraint(trial, prediction.predicted_peak_mb - search.budget_mb)
    if not prediction.feasible:
        trial.set_user_attr("infeasible", True)
        search.emit(
            f"trial {trial.number}: {config.model} infeasible, predicted peak "
            f"{prediction.predicted_peak_mb:.0f} MB > {search.budget_mb:.0f} MB: not trained"
        )
        return search.infeasible_values(prediction)
    try:  # precision auto is timed only for a genome that fits, so no unfit model is built here
        config, why = resolve_precision(config, search.num_classes)
    except GENOME_ERRORS as exc:
        return _infeasible(search, trial, config.model, "cannot be timed", exc)
    trial.set_user_attr("run_id", config.id)  # of the resolved precision
    trial.set_user_attr("precision_reason", why)
    record = train_trial(search, trial, config)
    search.baseline.learn(model_rss_mb, record.baseline_rss_mb)
    trial.set_user_attr("record", record.to_dict())
    return search.values_of(record)


UNPREDICTABLE_MB = 1e9  # the constraint of a genome whose probe failed: far over any budget
_REASON_CHARS = 400  # a reason is one line of a terminal, a report table and a user attribute


def error_reason(exc: BaseException) -> str:
    """One line for why a genome failed: our own message as it is, anything else prefixed with
    its type (a bare MemoryError says nothing else)."""
    text = " ".join(str(exc).split())
    if not isinstance(exc, EdgeTrainError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


def _infeasible(
    search: Search, trial: Trial, label: str, what: str, exc: BaseException
) -> list[float]:
    """Store a genome that cannot be built, probed or timed as infeasible, with its reason."""
    reason = error_reason(exc)
    trial.set_user_attr("infeasible", True)
    trial.set_user_attr("error", reason)
    _set_constraint(trial, UNPREDICTABLE_MB)
    search.emit(f"trial {trial.number}: {label} {what} ({reason}): not trained")
    return [OBJECTIVES[o].untrained for o in search.objectives]


def _genome_key(space: SearchSpace, genome: dict[str, Any]) -> str:
    """What a genome computes, the same on every machine and in every edgetrain version (a run
    config's id also holds this machine's data path and the config's fields)."""
    spec_id = space.spec_of(genome).id
    return json.dumps([spec_id, space.run_fields(genome)], sort_keys=True)


def _finished_twin(
    space: SearchSpace, study: optuna.Study, key: str, number: int
) -> FrozenTrial | None:
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        genome = t.user_attrs.get("genome")
        if t.number == number or not isinstance(genome, dict):
            continue
        try:
            if _genome_key(space, genome) == key:
                return t
        except GENOME_ERRORS:  # a genome of another space version, or one that never built
            continue
    return None


def train_trial(search: Search, trial: Trial, config: RunConfig) -> RunRecord:
    """Train `config` in a fresh process (resuming its run directory after a crash) while a
    watcher asks it to stop early when a finished trial dominates it."""
    from edgetrain.train.subprocess import run_in_subprocess

    spec = search.space.spec_of(trial.user_attrs["genome"])
    save_spec(spec, search.out / "specs")  # `--model <out>/specs/<id>.json` trains it again
    run = RunDir(search.out / "runs" / config.id)
    if run.is_finished():
        return run.load_record()
    search.emit(f"trial {trial.number}: training {config.model} ({spec.describe()})")
    watcher = _StopWatcher(search, trial.study, run, label=f"trial {trial.number}",
                           epochs=config.epochs)  # fmt: skip
    with watcher:
        runner = search.runner or run_in_subprocess
        return runner(config, run.path, resume=run.is_started())


class _StopWatcher:
    """Polls the run's history.csv; after each new epoch, asks the run to stop when a finished
    trial dominates it (early_stop.dominated_by). It also says what the trial is doing (epoch,
    step, loss, img/s, RSS, ETA, as the bench does for a cell) at each epoch's end and every
    `line_every_s`, so a search is never silent for the minutes a trial takes."""

    def __init__(
        self,
        search: Search,
        study: optuna.Study,
        run: RunDir,
        poll_s: float = 0.5,
        *,
        label: str = "",
        epochs: int | None = None,
        line_every_s: float = 30.0,
    ):
        self.search, self.study, self.run, self.poll_s = search, study, run, poll_s
        self.label, self.epochs, self.line_every_s = label or run.path.name, epochs, line_every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="edgetrain-stop")
        self._seen = 0
        self._last_line = time.monotonic()

    def __enter__(self) -> _StopWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.run.watch_file.unlink(missing_ok=True)  # a later plain resume waits for no one

    def _loop(self) -> None:
        from edgetrain.bench.progress import read_history

        self.run.acknowledge_epoch(0)  # the trainer waits for a verdict after every epoch
        while not self._stop.wait(self.poll_s):
            rows = read_history(self.run)
            new_epoch = len(rows) > self._seen
            if new_epoch or time.monotonic() - self._last_line >= self.line_every_s:
                self._say()
            if new_epoch:
                self._seen = len(rows)
                try:
                    self._check(rows)
                except Exception as exc:  # a locked database: this epoch goes unjudged
                    self.search.emit(f"{self.run.path.name}: early-stopping check failed: {exc}")
                self.run.acknowledge_epoch(len(rows))

    def _say(self) -> None:
        from edgetrain.bench.progress import cell_status

        self._last_line = time.monotonic()
        self.search.emit(f"{self.label}: {cell_status(self.run, self.epochs).text}")

    def _check(self, rows: list[dict[str, Any]]) -> None:
        acc = rows[-1].get("val_accuracy")
        if not isinstance(acc, float):
            return
        peak = max(float(r["peak_rss_mb"]) - float(r["baseline_rss_mb"]) for r in rows)
        better = dominated_by(
            len(rows), acc, peak, finished_curves(self.study),
            margin=self.search.stop_margin, min_epochs=self.search.stop_min_epochs,
        )  # fmt: skip
        if better is not None:
            reason = (
                f"dominated after epoch {len(rows)} by {better.label} (val accuracy "
                f"{better.val_accuracy[len(rows) - 1]:.3f} vs {acc:.3f}, "
                f"{better.peak_above_baseline_mb:.0f} vs {peak:.0f} MB)"
            )
            self.run.request_stop(reason)
            self.search.emit(f"{self.run.path.name}: {reason}")
            self._stop.set()


def retry_interrupted(study: optuna.Study) -> int:
    """Queue again every trial that Ctrl-C stopped and nothing retried yet, with Optuna's own
    retry (the genome as its parameters, the chain in `retry_history`), so its genome resumes
    its run directory; returns how many. Under the study's lock: two processes starting at
    once queue each retry once."""
    with study_lock(study._storage, study.study_name):
        trials = study.get_trials(deepcopy=False)
        retried = {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
        todo = [
            t
            for t in trials
            if t.state == TrialState.FAIL
            and t.user_attrs.get(INTERRUPTED_ATTR)
            and t.number not in retried
        ]
        for t in todo:
            retry = copy.deepcopy(t)
            retry.user_attrs = {}  # the objective sets them anew; "interrupted" must not stick
            RetryHeartbeatStaleTrialCallback()(study, retry)
    return len(todo)


def learn_baseline(search: Search, study: optuna.Study) -> int:
    """Teach the baseline model what the study's trained trials measured (a resumed search or a
    new worker predicts warm, not cold); returns how many trials it learned from."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        p, r = t.user_attrs.get("prediction") or {}, t.user_attrs.get("record")
        if r and "model_rss_mb" in p and "duplicate_of" not in t.user_attrs:
            search.baseline.learn(float(p["model_rss_mb"]), float(r["baseline_rss_mb"]))
            n += 1
    return n


def finished_curves(study: optuna.Study) -> list[TrialCurve]:
    """Every trained trial that ran all its epochs, as the early-stopping rule sees it."""
    curves = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        rec = t.user_attrs.get("record")
        if not rec or rec.get("status") != "finished" or "duplicate_of" in t.user_attrs:
            continue
        accs = [r.get("val_accuracy") for r in rec.get("history", [])]
        curves.append(TrialCurve(accs, float(rec["peak_above_baseline_mb"]), f"trial {t.number}"))
    return curves
