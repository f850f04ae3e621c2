"""The run directory: its layout, atomic writes, claiming a new run and resuming an old one.

Every file a run writes is named here and written through `RunDir`, so other modules never spell
a file name:

    config.json            the resolved RunConfig (the planner's choices included)
    requested-config.json  the config a parent process asked for (before the child resolves it)
    plan.json              the memory plan, when a budget was given
    checkpoint.pt          model + optimizer + RNG + history after every epoch (resume point)
    best.pt                the best validation epoch's weights (--select best-val)
    tested.pt              the weights the test score belongs to, BatchNorm statistics as tested
                           (recalibrated; see bnstats.py); what export and predict load
    stopped.pt             the state where the memory guard stopped training
    history.csv            one row per epoch
    stop.json              a request from outside (an architecture search) to end training
                           after the current epoch, with its reason
    watch.json             the last epoch the process deciding on stop.json has judged: while
                           it exists, training waits (briefly) for the verdict on each epoch
    progress.json          the current epoch and step (loss, images/s, RSS), rewritten every few
                           seconds, so a parent process can show a long epoch's progress
    rss.csv                process RSS samples over training (t_s, rss_mb, epoch)
    record.json            the RunRecord: written last, so its presence means "finished"
    train.log              output of a training child process
    run.lock               locked (flock) while a process trains here; holds that process's pid
    curves.png, rss.png    plots of history.csv and rss.csv
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetrain.errors import EdgeTrainError, describe_os_error
from edgetrain.fileio import atomic_write_text
from edgetrain.measure.units import MB
from edgetrain.train.checkpoint import load_checkpoint, save_checkpoint
from edgetrain.train.config import RunConfig
from edgetrain.train.record import RunRecord

try:
    import fcntl
except ImportError:  # not POSIX: no lock, a second trainer is not detected
    fcntl = None  # type: ignore[assignment]


@dataclass(frozen=True)
class RunDir:
    """One run's folder. Creating the object touches nothing on disk."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    # --- layout -----------------------------------------------------------------------------
    config = property(lambda self: self.path / "config.json")
    requested_config = property(lambda self: self.path / "requested-config.json")
    plan = property(lambda self: self.path / "plan.json")
    checkpoint = property(lambda self: self.path / "checkpoint.pt")
    best = property(lambda self: self.path / "best.pt")
    tested = property(lambda self: self.path / "tested.pt")
    stop_file = property(lambda self: self.path / "stop.json")
    watch_file = property(lambda self: self.path / "watch.json")
    stopped = property(lambda self: self.path / "stopped.pt")
    history = property(lambda self: self.path / "history.csv")
    progress = property(lambda self: self.path / "progress.json")
    rss_trace = property(lambda self: self.path / "rss.csv")
    record = property(lambda self: self.path / "record.json")
    log = property(lambda self: self.path / "train.log")
    lock = property(lambda self: self.path / "run.lock")
    curves_png = property(lambda self: self.path / "curves.png")
    rss_png = property(lambda self: self.path / "rss.png")

    def __str__(self) -> str:
        return str(self.path)

    # --- state ------------------------------------------------------------------------------
    def is_started(self) -> bool:
        """A config was written: the run can be resumed (or was finished)."""
        return self.config.is_file()

    def is_finished(self) -> bool:
        return self.record.is_file()

    # --- claiming and resuming --------------------------------------------------------------
    def claim(self, config: RunConfig) -> None:
        """Create the folder for a new run and write its config; refuse another run's folder
        and a path that cannot be a folder (a file, under a file, not writable)."""
        if self.checkpoint.exists() or self.record.exists():
            raise EdgeTrainError(
                f"{self.path} already holds a run; continue it with --resume --out {self.path} "
                "or choose another --out"
            )
        if self.path.exists() and not self.path.is_dir():
            raise EdgeTrainError(f"--out {self.path} is a file, not a folder; choose another --out")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.write_config(config)
        except OSError as exc:
            raise EdgeTrainError(
                f"cannot create the run directory {self.path}: {describe_os_error(exc)}"
            ) from None

    def abandon(self) -> None:
        """Undo `claim` for a run that failed before its first checkpoint: remove what it wrote
        (config and plan) and the folder if that leaves it empty."""
        if self.checkpoint.exists() or self.record.exists():
            return
        for path in (self.config, self.plan, self.requested_config, self.lock, self.progress):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty (a train.log, the user's files): keep it
            self.path.rmdir()

    def forget_plan(self, config: RunConfig) -> RunConfig:
        """Drop the memory plan (a new budget needs a new one) and return `config` with the
        settings that were asked for before the plan chose its own."""
        plan = self.load_plan()
        self.plan.unlink(missing_ok=True)
        asked = (plan or {}).get("requested")
        return config.replace(**asked) if isinstance(asked, dict) else config

    def load_config(self) -> RunConfig:
        if not self.config.is_file():
            raise EdgeTrainError(f"{self.path} is not a run directory (no config.json)")
        return RunConfig.from_dict(_read_json(self.config))

    def load_resume_state(self) -> dict[str, Any] | None:
        """The last epoch's training state, or None if the run stopped before its first epoch."""
        return load_checkpoint(self.checkpoint) if self.checkpoint.exists() else None

    # --- writing ----------------------------------------------------------------------------
    def write_config(self, config: RunConfig) -> None:
        _write_json(self.config, config.to_dict())

    def write_requested_config(self, config: RunConfig) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        _write_json(self.requested_config, config.to_dict())
        return self.requested_config

    def write_plan(self, plan: dict[str, Any]) -> None:
        _write_json(self.plan, plan)

    def load_plan(self) -> dict[str, Any] | None:
        return _read_json(self.plan) if self.plan.exists() else None

    def save_state(self, state: dict[str, Any], *, which: str = "checkpoint") -> Path:
        """Save a training state as checkpoint.pt, best.pt, tested.pt or stopped.pt."""
        path = self._state_file(which)
        save_checkpoint(path, state)
        return path

    def load_state(self, which: str = "checkpoint") -> dict[str, Any]:
        return load_checkpoint(self._state_file(which))

    def _state_file(self, which: str) -> Path:
        files = {"checkpoint": self.checkpoint, "best": self.best, "tested": self.tested}
        return {**files, "stopped": self.stopped}[which]

    def write_history(self, history: list[dict[str, Any]]) -> None:
        if not history:
            return
        buf = io.StringIO()
        # every key of every row (a GPU figure may appear only in later epochs), in first-seen order
        fields = list(dict.fromkeys(k for row in history for k in row))
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in history:
            writer.writerow({k: row.get(k) for k in writer.fieldnames})
        atomic_write_text(self.history, buf.getvalue())

    def append_rss(self, times_s: list[float], rss_bytes: list[int], epoch: str) -> None:
        """Append RSS samples (seconds since the sampler started, bytes) tagged with the epoch."""
        new = not self.rss_trace.exists()
        with self.rss_trace.open("a") as f:
            if new:
                f.write("t_s,rss_mb,epoch\n")
            for t, b in zip(times_s, rss_bytes, strict=True):
                f.write(f"{t:.3f},{b / MB:.2f},{epoch}\n")

    def write_progress(self, *, min_interval_s: float = 2.0, **fields: float) -> bool:
        """Rewrite progress.json with `fields` (epoch, epochs, step, steps, loss, img_s, rss_mb,
        epoch_elapsed_s) unless it was written less than `min_interval_s` ago; cheap enough to
        call after every step. Returns whether it wrote."""
        now = time.time()
        with contextlib.suppress(FileNotFoundError):
            if now - self.progress.stat().st_mtime < min_interval_s:
                return False
        _write_json(self.progress, {**fields, "t": now})
        return True

    def request_stop(self, reason: str) -> None:
        """Ask the process training here to finish after its current epoch (tested and recorded
        as usual, status "stopped_early")."""
        _write_json(self.stop_file, {"reason": reason, "t": time.time()})

    def acknowledge_epoch(self, epoch: int) -> None:
        """The watcher has judged `epoch` (0: it is watching, nothing judged yet)."""
        _write_json(self.watch_file, {"epoch": epoch})

    def wait_for_verdict(self, epoch: int, timeout_s: float = 15.0) -> None:
        """When a watcher is present, wait until it has judged `epoch` (or `timeout_s`), so that
        a stop request for this epoch is not read one epoch late."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.watch_file.exists():
            try:
                judged = int(json.loads(self.watch_file.read_text(encoding="utf-8"))["epoch"])
            except (OSError, ValueError, KeyError, TypeError):
                judged = -1  # being rewritten: read again
            if judged >= epoch or self.stop_file.exists():
                return
            time.sleep(0.1)

    def stop_requested(self) -> str | None:
        """The reason of a stop request, or None."""
        try:
            return str(json.loads(self.stop_file.read_text(encoding="utf-8"))["reason"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def read_progress(self) -> dict[str, Any] | None:
        """The last progress.json, or None (none yet, or unreadable: a reader never fails)."""
        try:
            return json.loads(self.progress.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    @contextlib.contextmanager
    def locked(self) -> Iterator[RunLock]:
        """Hold this run directory's exclusive lock (run.lock) while training here.

        A second holder gets an EdgeTrainError naming the pid that holds it. The lock belongs to
        an open file: a child process that inherits `RunLock.fd` (and `RunLock.env()`) holds it
        too, and it is released when the last holder exits, however it dies. A process that
        inherited it may call `locked()` again: that is a no-op, not a conflict.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        inherited = _inherited_lock_fd(self.lock)
        if inherited is not None:
            yield RunLock(inherited, self.lock)
            return
        fd = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    raise EdgeTrainError(
                        f"run directory {self.path} in use by pid {owner}: another process is "
                        "training there; wait for it to finish or stop it, then retry"
                    ) from None
            lock = RunLock(fd, self.lock)
            lock.set_owner(os.getpid())
            yield lock
        finally:
            os.close(fd)  # releases the lock unless a child still holds the file

    def save_record(self, record: RunRecord) -> Path:
        _write_json(self.record, record.to_dict())
        return self.record

    def load_record(self) -> RunRecord:
        if not self.record.is_file():
            raise EdgeTrainError(f"{self.path} holds no finished run (no record.json)")
        return RunRecord.from_dict(_read_json(self.record), source=str(self.record))


_LOCK_ENV = "EDGETRAIN_RUN_LOCK_FD"


@dataclass(frozen=True)
class RunLock:
    """A held run.lock: its file descriptor, to pass to a child process that trains here."""

    fd: int
    path: Path

    def set_owner(self, pid: int) -> None:
        """Write the pid that an error about this lock should name (the training process)."""
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{pid}\n".encode(), 0)

    def env(self) -> dict[str, str]:
        """Environment for a child given this fd (pass_fds): its `locked()` then knows it holds it."""
        return {_LOCK_ENV: str(self.fd)}


def _inherited_lock_fd(lock_path: Path) -> int | None:
    # the fd named by the environment is ours only if it is open on this very lock file
    try:
        fd = int(os.environ.get(_LOCK_ENV, ""))
        held, here = os.fstat(fd), os.stat(lock_path)
    except (ValueError, OSError):
        return None
    return fd if (held.st_dev, held.st_ino) == (here.st_dev, here.st_ino) else None


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgeTrainError(f"cannot read {path}: {exc}") from None
