"""Benches and workers started at the same moment on one SQLite study: each cell is queued once
and each waiting trial is run once (real processes, released together by a "go" file)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from edgetrain.bench.experiments import load_experiment
from edgetrain.bench.study import enqueue_cells, open_storage, open_study

# each process imports everything first, says "ready", then waits for the go file: the racing
# part starts within a millisecond in every process
_RACER = """
import sys, time
from pathlib import Path
import edgetrain.bench.study, edgetrain.bench.experiments, edgetrain.report.cli  # warm imports
from edgetrain.cli import main
{setup}
print("ready", flush=True)
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.0005)
{race}
"""

_WORKER_SETUP = """
import os
from edgetrain.bench.study import open_storage, open_study, run_worker
from edgetrain.train.record import RunRecord

url, log, out = sys.argv[2], sys.argv[3], sys.argv[4]
storage = open_storage(url, heartbeat_interval=1, grace_period=60)
study = open_study(storage, "t", create=False)

def runner(config, run_dir, resume=False):
    with open(log, "a") as f:  # one short O_APPEND write per run: lines never interleave
        f.write(f"{config.id} {os.getpid()}\\n")
    return RunRecord(model=config.model, data=config.data, config=config.to_dict(),
                     test_accuracy=0.5, peak_rss_mb=400.0, mean_rss_mb=350.0,
                     baseline_rss_mb=300.0, peak_above_baseline_mb=100.0, epoch_s=1.0, history=[])
"""


def _race(tmp_path: Path, script: str, argvs: list[list[str]]) -> list[subprocess.CompletedProcess]:
    path = tmp_path / "racer.py"
    path.write_text(script)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(path), str(go), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for argv in argvs
    ]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.communicate()[0]
        go.touch()
        outs = [p.communicate(timeout=180)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    return [
        subprocess.CompletedProcess(p.args, p.returncode, o)
        for p, o in zip(procs, outs, strict=True)
    ]


@pytest.mark.slow
def test_benches_started_together_enqueue_each_cell_once(tmp_path, tiny_experiment):
    toml = tiny_experiment(seeds=tuple(range(6)))  # 12 cells
    cells = [c.id for c in load_experiment(str(toml)).cells()]
    out = tmp_path / "out"  # one SQLite study for all of them
    script = _RACER.format(setup="", race="sys.exit(main(sys.argv[2:]))")
    argv = ["bench", str(toml), "--out", str(out), "--enqueue-only"]
    done = _race(tmp_path, script, [argv] * 3)
    assert [d.returncode for d in done] == [0, 0, 0], [d.stdout for d in done]

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    trials = study.get_trials()
    assert sorted(t.user_attrs["cell_id"] for t in trials) == sorted(cells)  # each cell once
    assert all(t.state == TrialState.WAITING for t in trials)
    assert sum(" 12 newly queued" in d.stdout for d in done) == 1, [d.stdout for d in done]


@pytest.mark.slow
def test_workers_started_together_run_each_waiting_trial_once(tmp_path, tiny_experiment):
    exp = load_experiment(str(tiny_experiment(seeds=tuple(range(12)))))  # 24 cells
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(url)
    study = open_study(storage, "t", create=True)
    enqueue_cells(study, exp.cells())
    log = tmp_path / "runs.log"
    script = _RACER.format(
        setup=_WORKER_SETUP, race="print(run_worker(study, storage, Path(out), {}, runner=runner))"
    )
    done = _race(tmp_path, script, [[url, str(log), str(tmp_path / f"w{i}")] for i in range(3)])
    assert [d.returncode for d in done] == [0, 0, 0], [d.stdout for d in done]

    runs = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert runs == Counter(c.id for c in exp.cells())  # every cell run, none run twice
    trials = study.get_trials()
    assert len(trials) == 24 and all(t.state == TrialState.COMPLETE for t in trials)


def test_enqueue_holds_the_study_lock(tmp_path, tiny_experiment):
    # while another process holds the study's lock, enqueueing waits for it
    exp = load_experiment(str(tiny_experiment()))
    db = tmp_path / "s.db"
    storage = open_storage(f"sqlite:///{db}")
    study = open_study(storage, "t", create=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
            "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(1.5)",
            str(db) + ".lock",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    t0 = time.monotonic()
    assert len(enqueue_cells(study, exp.cells()).new) == 2
    assert time.monotonic() - t0 > 0.5
    holder.wait()
