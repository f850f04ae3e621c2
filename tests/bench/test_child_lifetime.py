"""A training child lives no longer than its bench, and no two processes train in one run
directory (real processes: a bench killed with SIGKILL, a second trainer on a busy run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgetrain.bench.experiments import load_experiment
from edgetrain.errors import EdgeTrainError
from edgetrain.train.rundir import RunDir
from edgetrain.train.subprocess import run_in_subprocess

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def _alive(pid: int) -> bool:
    # a zombie (dead, not yet reaped by whoever adopted it) is not alive
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def _wait_for(cond, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.slow
def test_sigkilled_bench_leaves_no_training_child(tmp_path, tiny_experiment):
    toml = tiny_experiment(models=("xception_lite",), epochs=500)
    out = tmp_path / "out"
    bench = subprocess.Popen(
        [sys.executable, "-m", "edgetrain", "bench", str(toml), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    child = None
    try:
        # the child trains: its first epoch is in history.csv
        _wait_for(lambda: list(out.glob("runs/*/history.csv")), 120, "the first epoch")
        (child,) = _children(bench.pid)
        assert _alive(child)
        bench.send_signal(signal.SIGKILL)
        bench.wait()
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the training child outlived its killed bench"
    finally:
        bench.kill()
        if child is not None and _alive(child):
            os.kill(child, signal.SIGKILL)


@pytest.mark.slow
def test_second_trainer_on_a_busy_run_directory_is_refused(tmp_path, tiny_experiment):
    config = load_experiment(str(tiny_experiment(epochs=500))).cells()[0].config
    run = RunDir(tmp_path / "run")
    first: list[BaseException] = []

    def train_first() -> None:
        try:
            run_in_subprocess(config, run.path)
        except BaseException as exc:  # handed to the test thread
            first.append(exc)

    thread = threading.Thread(target=train_first)
    thread.start()
    try:
        _wait_for(run.history.exists, 120, "the first epoch")
        pid = int(run.lock.read_text())
        assert _alive(pid) and pid != os.getpid()  # the lock names the training child
        with pytest.raises(EdgeTrainError, match=f"run directory .* in use by pid {pid}"):
            run_in_subprocess(config, run.path, resume=True, timeout_s=60)
    finally:  # stop the first training, whatever happened above
        for kid in _children(os.getpid()):
            if str(run.path) in Path(f"/proc/{kid}/cmdline").read_text(errors="replace"):
                os.kill(kid, signal.SIGKILL)
        thread.join(timeout=30)
    assert isinstance(first[0], EdgeTrainError)  # killed: a failure with its exit status
    # the lock went with the processes: the run can be resumed now
    with run.locked():
        pass
