"""`edgetrain bench` on SQLite: runs every cell once, resumes, reports; the queue is Optuna's."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from edgetrain.bench.experiments import load_experiment
from edgetrain.bench.study import enqueue_cells, open_storage, open_study, run_worker
from edgetrain.cli import main
from edgetrain.train.record import RunRecord


def _fake_runner(calls):
    # stands in for training: a record with the two objectives, derived from the config
    def run(config, run_dir, resume=False):
        calls.append((config.model, config.seed, resume))
        return RunRecord(
            model=config.model,
            data=config.data,
            config=config.to_dict(),
            test_accuracy=0.5 + 0.1 * config.seed,
            peak_rss_mb=400.0 + config.seed,
            mean_rss_mb=350.0,
            baseline_rss_mb=300.0,
            peak_above_baseline_mb=100.0 + config.seed,
            epoch_s=1.0,
            history=[],
        )

    return run


def test_enqueue_is_idempotent_and_worker_runs_each_cell_once(tmp_path, tiny_experiment):
    exp = load_experiment(str(tiny_experiment(seeds=(0, 1))))
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    study = open_study(storage, "t", create=True)
    first = enqueue_cells(study, exp.cells())
    again = enqueue_cells(study, exp.cells())
    assert len(first.new) == 4 and not first.already
    assert not again.new and len(again.already) == 4
    calls = []
    counts = run_worker(study, storage, tmp_path, {}, runner=_fake_runner(calls))
    assert counts == {"done": 4, "failed": 0}
    assert sorted((m, s) for m, s, _ in calls) == sorted(
        (c.config.model, c.config.seed) for c in exp.cells()
    )
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert {t.user_attrs["cell_id"] for t in trials} == {c.id for c in exp.cells()}
    assert all(
        t.values
        == [
            t.user_attrs["record"]["test_accuracy"],
            t.user_attrs["record"]["peak_above_baseline_mb"],
        ]
        for t in trials
    )
    assert not enqueue_cells(study, exp.cells()).new  # done cells are never queued again


def test_stale_cell_is_retried(tmp_path, tiny_experiment):
    # a worker that died mid-cell: its trial stays RUNNING without heartbeats
    exp = load_experiment(str(tiny_experiment(models=("xception_lite",))))
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=1)
    study = open_study(storage, "t", create=True)
    enqueue_cells(study, exp.cells())
    study_id = storage.get_study_id_from_name("t")
    dead = storage.get_trial_id_from_study_id_trial_number(study_id, 0)
    assert storage.set_trial_state_values(dead, TrialState.RUNNING)
    storage.record_heartbeat(dead)
    import time

    time.sleep(2.5)
    calls = []
    counts = run_worker(study, storage, tmp_path, {}, runner=_fake_runner(calls), poll_s=0.2)
    assert counts["done"] == 1 and len(calls) == 1
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.COMPLETE]
    assert study.get_trials()[1].user_attrs["cell_id"] == exp.cells()[0].id


@pytest.mark.slow
def test_bench_cli_end_to_end_and_resume(tmp_path, tiny_experiment, capsys):
    toml = tiny_experiment()
    out = tmp_path / "out"
    assert main(["bench", str(toml), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2 newly queued" in text
    assert (out / "report" / "report.html").is_file()
    assert (out / "report" / "report.md").is_file()
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}")
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 2
    # the same command again: nothing new to run
    assert main(["bench", str(toml), "--out", str(out)]) == 0
    assert "0 newly queued, 2 already" in capsys.readouterr().out
    assert len(optuna.load_study(study_name="tiny", storage=storage).get_trials()) == 2
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.html").is_file()


def test_bench_errors(tmp_path, capsys):
    assert main(["bench", "paper-caltech101", "--out", str(tmp_path)]) == 2
    assert "--data caltech101=PATH" in capsys.readouterr().err
    assert main(["bench", "nope", "--out", str(tmp_path)]) == 2
    assert main(["worker", "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--study", "s"]) == 2
    assert "no database" in capsys.readouterr().err and not (tmp_path / "x.db").exists()
    open_storage(f"sqlite:///{tmp_path / 'y.db'}")  # a database without the study
    assert main(["worker", "--storage", f"sqlite:///{tmp_path / 'y.db'}", "--study", "s"]) == 2
    assert "no study 's'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_two_fold_bench_resumes_without_duplicates_and_pairs_its_models(
    tmp_path, tiny_experiment, capsys
):
    toml = tiny_experiment(seeds=(0, 1))
    out = tmp_path / "out"
    assert main(["bench", str(toml), "--folds", "2", "--out", str(out)]) == 0
    assert "8 newly queued" in capsys.readouterr().out  # 2 models x 2 seeds x 2 folds
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}")
    study = optuna.load_study(study_name="tiny-folds2", storage=storage)
    configs = [t.user_attrs["config"] for t in study.get_trials()]
    cells = {(c["model"], c["seed"], c["fold"], c["folds"]) for c in configs}
    assert len(cells) == 8 and {c[3] for c in cells} == {2}
    assert main(["bench", str(toml), "--folds", "2", "--out", str(out)]) == 0
    assert "0 newly queued, 8 already" in capsys.readouterr().out
    assert len(optuna.load_study(study_name="tiny-folds2", storage=storage).get_trials()) == 8
    report = (out / "report" / "report.md").read_text()
    assert "Paired verdicts" in report and "| 4 |" in report  # 2 seeds x 2 folds as pairs


@pytest.mark.parametrize(("folds", "message"), [("1", "--folds must be 2..100"), ("-2", "--folds")])
def test_bench_refuses_bad_folds(tmp_path, tiny_experiment, capsys, folds, message):
    out = tmp_path / "out"
    assert main(["bench", str(tiny_experiment()), "--folds", folds, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not (out / "study.db").exists()
