"""Run a training in a fresh Python process, so process-level memory peaks belong to that run.

The child's life is tied to its parent's: on Linux it gets SIGKILL when the parent dies (even by
SIGKILL), so a killed bench leaves no orphan training. It also holds the run directory's lock
(`RunDir.locked`, inherited from the parent), so a retried cell can never write the same run
directory as a training that is still running: it gets "run directory in use by pid N".
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from edgetrain.errors import EdgeTrainError
from edgetrain.train.config import RunConfig
from edgetrain.train.record import RunRecord
from edgetrain.train.rundir import RunDir


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGKILL when its parent dies (Linux), else None.

    Everything is looked up here, in the parent: between fork and exec the child only makes
    one foreign call and compares two integers (no import, no dlopen, no lock taken).
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import signal

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigkill, parent = 1, int(signal.SIGKILL), os.getpid()

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigkill)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def train_command(config: RunConfig | None, out_dir: Path, *, resume: bool = False) -> list[str]:
    """The argv that trains `config` into `out_dir` in a fresh interpreter (no progress bar)."""
    cmd = [sys.executable, "-m", "edgetrain", "train", "--no-progress", "--out", str(out_dir)]
    if resume:
        return [*cmd, "--resume"]
    cfg_file = RunDir(out_dir).write_requested_config(config)
    return [*cmd, "--config", str(cfg_file)]


def run_in_subprocess(
    config: RunConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    timeout_s: float | None = None,
    log_file: Path | None = None,
) -> RunRecord:
    """Train in a child process and return the record it wrote; a failure raises EdgeTrainError
    with the child's last output lines. The run directory is locked for the child's whole life:
    if another process trains there, this raises EdgeTrainError before writing anything."""
    run = RunDir(out_dir)
    out = run.path
    with run.locked() as lock:
        resume = resume and run.is_started()
        cmd = train_command(config, out, resume=resume)
        log_path = log_file or run.log
        with log_path.open("ab") as log:
            # PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the
            # process. The forking thread is this one, and it blocks in wait() below until the
            # child has ended, so the signal can only come from the whole process dying.
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **lock.env()},
                pass_fds=(lock.fd,),  # the child holds the lock too, for as long as it lives
                preexec_fn=_parent_death_signal(),
            )
            lock.set_owner(proc.pid)
            try:
                returncode = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise EdgeTrainError(
                    f"training in {out} took longer than {timeout_s:g} s and was stopped"
                ) from None
            except BaseException:  # Ctrl-C or an error here: never leave the child running
                proc.kill()
                proc.wait()
                raise
    if returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise EdgeTrainError(f"training in {out} failed (exit {returncode}): " + " | ".join(tail))
    return run.load_record()
