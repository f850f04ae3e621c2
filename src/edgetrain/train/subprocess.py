"""Run a training in a fresh Python process, so process-level memory peaks belong to that run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from edgetrain.errors import EdgeTrainError
from edgetrain.train.config import RunConfig
from edgetrain.train.record import CONFIG, RunRecord


def _die_with_parent() -> None:
    # Linux: the child gets SIGKILL when its parent (a bench worker) dies, so a killed worker
    # leaves no orphan training that would race the retry of its cell.
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def train_command(config: RunConfig | None, out_dir: Path, *, resume: bool = False) -> list[str]:
    """The argv that trains `config` into `out_dir` in a fresh interpreter (no progress bar)."""
    cmd = [sys.executable, "-m", "edgetrain", "train", "--no-progress", "--out", str(out_dir)]
    if resume:
        return [*cmd, "--resume"]
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg_file = out_dir / "requested-config.json"
    cfg_file.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
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
    with the child's last output lines."""
    out = Path(out_dir)
    if resume and not (out / CONFIG).exists():
        resume = False
    cmd = train_command(config, out, resume=resume)
    log_path = log_file or out / "train.log"
    out.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.run(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout_s,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            check=False,
        )
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise EdgeTrainError(
            f"training in {out} failed (exit {proc.returncode}): " + " | ".join(tail)
        )
    return RunRecord.load(out)
