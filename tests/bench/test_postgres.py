"""Several `edgetrain worker` processes sharing one study in PostgreSQL.

Needs a server: set EDGETRAIN_TEST_POSTGRES to a SQLAlchemy URL (`.ci/run` starts one on
127.0.0.1 and sets it); skipped otherwise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

URL = os.environ.get("EDGETRAIN_TEST_POSTGRES")
pytestmark = [
    pytest.mark.skipif(not URL, reason="EDGETRAIN_TEST_POSTGRES is not set (no PostgreSQL)"),
    pytest.mark.slow,
]


def _edgetrain(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgetrain", *args]


def _study(name: str):
    from edgetrain.bench.study import open_storage, open_study

    storage = open_storage(URL, heartbeat_interval=1, grace_period=3)
    return open_study(storage, name, create=False)


def _enqueue(toml, name: str, tmp_path) -> None:
    subprocess.run(
        _edgetrain(
            "bench",
            str(toml),
            "--storage",
            URL,
            "--study",
            name,
            "--enqueue-only",
            "--out",
            str(tmp_path / "enqueue"),
        ),
        check=True,
        capture_output=True,
    )


def _worker(name: str, out) -> subprocess.Popen:
    return subprocess.Popen(
        _edgetrain(
            "worker",
            "--storage",
            URL,
            "--study",
            name,
            "--out",
            str(out),
            "--heartbeat",
            "1",
            "--grace",
            "3",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_two_workers_do_every_cell_exactly_once(tmp_path, tiny_experiment):
    from optuna.trial import TrialState

    from edgetrain.bench.experiments import load_experiment

    toml = tiny_experiment(seeds=(0, 1, 2))
    cells = {c.id for c in load_experiment(str(toml)).cells()}
    name = f"two-workers-{uuid.uuid4().hex[:8]}"
    _enqueue(toml, name, tmp_path)
    workers = [_worker(name, tmp_path / f"w{i}") for i in range(2)]
    outputs = [w.communicate(timeout=600)[0].decode() for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    trials = _study(name).get_trials()
    assert len(trials) == len(cells) == 6  # nothing lost, nothing duplicated, nothing extra
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.user_attrs["cell_id"] for t in trials) == sorted(cells)
    assert all(t.user_attrs["record"]["test_accuracy"] == t.values[0] for t in trials)


def test_killed_worker_cell_is_completed_by_survivor(tmp_path, tiny_experiment):
    from optuna.trial import TrialState

    toml = tiny_experiment(models=("xception_lite",), epochs=6)
    name = f"kill-worker-{uuid.uuid4().hex[:8]}"
    _enqueue(toml, name, tmp_path)
    doomed = _worker(name, tmp_path / "doomed")
    study = _study(name)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if study.get_trials(states=(TrialState.RUNNING,)):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the first worker never started the cell")
    survivor = _worker(name, tmp_path / "survivor")
    time.sleep(1.0)  # the survivor is now waiting on the running cell
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    out = survivor.communicate(timeout=600)[0].decode()
    assert survivor.returncode == 0, out

    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].user_attrs["cell_id"] == trials[1].user_attrs["cell_id"]
    assert trials[1].system_attrs.get("failed_trial") == trials[0].number
    assert trials[1].user_attrs["worker"].endswith(f":{survivor.pid}")
