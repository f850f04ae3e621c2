"""Experiment matrices as Optuna studies: cells are enqueued trials, workers pop them.

Optuna's storage is the queue and the results store (a SQLite file by default, PostgreSQL to share
a study between machines). Workers send heartbeats, and `fail_stale_trials` +
`RetryHeartbeatStaleTrialCallback` put a dead worker's cell back in the queue.

Every read-then-write on the queue (enqueue the cells that are not there yet, pop a waiting cell,
fail a stale one and re-queue it) runs under one lock per study that the storage provides
(`study_lock`: a transaction-scoped advisory lock on PostgreSQL and MySQL, a file lock next to a
SQLite file), so two benches or workers started at the same moment never enqueue a cell twice
or run one waiting trial twice. A process that dies releases the lock with its connection or
file. Nothing here is a home-made queue or database.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.storages import (
    BaseStorage,
    RDBStorage,
    RetryHeartbeatStaleTrialCallback,
    fail_stale_trials,
)
from optuna.trial import TrialState
from sqlalchemy import text

from edgetrain.bench.experiments import Cell, resolve_cell_config
from edgetrain.errors import EdgeTrainError
from edgetrain.objectives import OBJECTIVES as TABLE
from edgetrain.report.storage import check_sqlite_url, open_rdb, sqlite_path
from edgetrain.train.config import RunConfig
from edgetrain.train.record import RunRecord
from edgetrain.train.rundir import RunDir

# a bench cell's values: the report's accuracy and memory (the test split: a bench selects nothing)
_BENCH_OBJECTIVES = (TABLE["accuracy"], TABLE["memory"])
OBJECTIVES = tuple(o.report_field for o in _BENCH_OBJECTIVES)
DIRECTIONS = tuple(o.optuna_direction for o in _BENCH_OBJECTIVES)
_ACTIVE = (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def open_storage(
    url: str,
    *,
    heartbeat_interval: int = 10,
    grace_period: int = 30,
    max_retry: int = 3,
    must_exist: bool = False,
) -> RDBStorage:
    """An Optuna RDB storage with heartbeats; a stale cell is retried up to `max_retry` times.
    A SQLite URL must name a file in an existing folder, and an existing file when
    `must_exist` (a worker joins a study, it never starts one): `report.storage`."""
    check_sqlite_url(url, must_exist=must_exist)
    # two processes creating one fresh SQLite file would both create its tables
    with _sqlite_file_lock(sqlite_path(url)):
        return open_rdb(
            url,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
        )


def check_study_name(name: str | None, flag: str = "--study") -> None:
    """Refuse an empty or blank study name (None: the command's default name)."""
    if name is not None and not name.strip():
        raise EdgeTrainError(f"{flag} must name a study, got {name!r}")


# --- the storage's lock -------------------------------------------------------------------------


@contextlib.contextmanager
def study_lock(storage: BaseStorage, study_name: str) -> Iterator[None]:
    """Hold the storage's exclusive lock for `study_name` (blocking) across processes and machines.

    PostgreSQL: `pg_advisory_xact_lock` in a transaction of its own, released at commit or when
    the connection drops; MySQL: `GET_LOCK`; SQLite: `flock` on a file next to the database
    (SQLite is one machine's file; SQLite's own write lock cannot be used, since Optuna's
    sessions must write while it is held). Optuna's API does the reads and writes inside.
    """
    engine = getattr(storage, "_backend", storage).engine  # a study's storage wraps the RDB one
    dialect = engine.dialect.name
    digest = hashlib.sha256(f"edgetrain-study:{study_name}".encode()).digest()
    if dialect == "postgresql":
        key = int.from_bytes(digest[:8], "big", signed=True)  # a bigint key
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
            yield
    elif dialect in ("mysql", "mariadb"):
        name = "edgetrain-" + digest[:16].hex()  # GET_LOCK names are at most 64 characters
        with engine.connect() as conn:
            conn.execute(text("SELECT GET_LOCK(:n, -1)"), {"n": name})
            try:
                yield
            finally:
                conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": name})
    else:
        with _sqlite_file_lock(sqlite_path(str(engine.url))):
            yield


_local_lock = threading.Lock()  # in-memory SQLite: only this process can see the study


@contextlib.contextmanager
def _sqlite_file_lock(db: Path | None) -> Iterator[None]:
    if db is None:
        with _local_lock:
            yield
        return
    import fcntl

    # the folder exists (`check_sqlite_url`): a lock never creates one
    with open(db.with_name(db.name + ".lock"), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # released when the file closes or we die
        yield


def open_study(storage: RDBStorage, name: str, *, create: bool) -> optuna.Study:
    """Load study `name`, or create it (two objectives) when `create`."""
    if create:
        with study_lock(storage, name):
            return optuna.create_study(
                storage=storage, study_name=name, directions=list(DIRECTIONS), load_if_exists=True
            )
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise EdgeTrainError(
            f"no study {name!r} in this storage; studies there: {', '.join(names) or 'none'}"
        ) from None


@dataclass
class EnqueueResult:
    new: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # done, waiting or running


def enqueue_cells(study: optuna.Study, cells: list[Cell]) -> EnqueueResult:
    """Enqueue every cell that has no complete, waiting or running trial (idempotent, and atomic
    under the study's lock: benches started together queue each cell once)."""
    with study_lock(study._storage, study.study_name):
        return _enqueue_missing(study, cells)


def _enqueue_missing(study: optuna.Study, cells: list[Cell]) -> EnqueueResult:
    present = {
        t.user_attrs.get("cell_id") for t in study.get_trials(deepcopy=False, states=_ACTIVE)
    }
    result = EnqueueResult()
    for cell in cells:
        if cell.id in present:
            result.already.append(cell.id)
            continue
        study.enqueue_trial(
            {},
            user_attrs={
                "cell_id": cell.id,
                "cell_label": cell.label(),
                "dataset": cell.dataset,
                "config": cell.config.to_dict(),
            },
        )
        present.add(cell.id)
        result.new.append(cell.id)
    return result


def study_status(study: optuna.Study) -> dict[str, int]:
    counts = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] += 1
    return counts


# --- the worker ---------------------------------------------------------------------------------


@dataclass
class CellEvent:
    kind: str  # "start" | "done" | "failed" | "waiting"
    label: str
    trial_number: int
    record: RunRecord | None = None
    error: str | None = None
    run_dir: Path | None = None


class _Heartbeat:
    """Records the trial's heartbeat every `interval` seconds until stopped."""

    def __init__(self, storage: RDBStorage, trial_id: int, interval: float) -> None:
        self._storage, self._trial_id, self._interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="edgetrain-heartbeat")

    def _run(self) -> None:
        while not self._stop.is_set():
            # a missed beat is not fatal: the grace period covers a few
            with contextlib.suppress(Exception):
                self._storage.record_heartbeat(self._trial_id)
            self._stop.wait(self._interval)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _pop_waiting(
    study: optuna.Study, storage: RDBStorage
) -> tuple[int, optuna.trial.FrozenTrial] | None:
    # Optuna's WAITING -> RUNNING check reads, then writes; on SQLite two processes can both read
    # WAITING (no SELECT ... FOR UPDATE there), so the read and the write happen under the lock
    study_id = storage.get_study_id_from_name(study.study_name)
    with study_lock(storage, study.study_name):
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            try:
                if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    return trial_id, storage.get_trial(trial_id)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
    return None


def _fail_stale(study: optuna.Study, storage: RDBStorage) -> None:
    # two workers failing one stale trial at once would each queue a retry of its cell
    with study_lock(storage, study.study_name):
        fail_stale_trials(study)


def run_worker(
    study: optuna.Study,
    storage: RDBStorage,
    out_dir: Path,
    data: dict[str, str],
    *,
    wait_for_running: bool = True,
    poll_s: float = 2.0,
    on_event: Callable[[CellEvent], None] | None = None,
    runner: Callable[..., RunRecord] | None = None,
) -> dict[str, int]:
    """Pop waiting cells and run each in a fresh process until the queue is empty.

    With `wait_for_running`, the worker stays while other workers' cells are running, so a cell
    whose worker dies (stale heartbeat -> retried) is picked up here. Returns counts of cells
    done and failed by this worker.
    """
    from edgetrain.train.subprocess import run_in_subprocess

    runner = runner or run_in_subprocess
    emit = on_event or (lambda e: None)
    interval = float(storage.get_heartbeat_interval() or 10)
    done = failed = 0
    while True:
        _fail_stale(study, storage)  # a dead worker's cell goes back to WAITING (retry callback)
        popped = _pop_waiting(study, storage)
        if popped is None:
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if wait_for_running and running:
                emit(CellEvent("waiting", f"{len(running)} cell(s) running elsewhere", -1))
                time.sleep(poll_s)
                continue
            return {"done": done, "failed": failed}
        ok = _run_trial(study, storage, *popped, out_dir, data, interval, emit, runner)
        done += ok
        failed += not ok


def _run_trial(study, storage, trial_id, trial, out_dir, data, interval, emit, runner) -> bool:
    attrs = trial.user_attrs
    label = attrs.get("cell_label", f"trial {trial.number}")
    if "config" not in attrs:  # not one of ours: leave it failed, with a reason
        storage.set_trial_user_attr(trial_id, "error", "no cell config in this trial")
        study.tell(trial.number, state=TrialState.FAIL)
        return False
    cell_config = RunConfig.from_dict(attrs["config"])
    run = RunDir(out_dir / "runs" / attrs["cell_id"])
    run_dir = run.path
    storage.set_trial_user_attr(trial_id, "worker", f"{socket.gethostname()}:{os.getpid()}")
    emit(CellEvent("start", label, trial.number, run_dir=run_dir))
    try:
        with _Heartbeat(storage, trial_id, interval):
            config = resolve_cell_config(cell_config, {**study.user_attrs.get("data", {}), **data})
            if run.is_finished():  # finished before its worker could report it
                record = run.load_record()
            else:
                record = runner(config, run_dir, resume=run.is_started())
    except KeyboardInterrupt:
        # put the cell straight back in the queue: a re-run of the same command resumes it
        with study_lock(storage, study.study_name):
            study.tell(trial.number, state=TrialState.FAIL)
            RetryHeartbeatStaleTrialCallback()(study, storage.get_trial(trial_id))
        raise
    except EdgeTrainError as exc:
        storage.set_trial_user_attr(trial_id, "error", str(exc))
        study.tell(trial.number, state=TrialState.FAIL)
        emit(CellEvent("failed", label, trial.number, error=str(exc), run_dir=run_dir))
        return False
    record = record.replace(
        run_dir=str(run_dir), dataset=attrs.get("dataset"), cell_id=attrs["cell_id"]
    )
    storage.set_trial_user_attr(trial_id, "record", record.to_dict())
    study.tell(trial.number, values=[float(getattr(record, k)) for k in OBJECTIVES])
    emit(CellEvent("done", label, trial.number, record=record, run_dir=run_dir))
    return True
