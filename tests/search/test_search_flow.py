"""The search end to end: infeasible genomes never train, a tiny search writes its fronts and
resumes without training anything twice, bad input stops before training, and a found
architecture trains like any named model."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from edgetrain.cli import main
from edgetrain.errors import EdgeTrainError
from edgetrain.search import study as search_study
from edgetrain.search.feasibility import BaselineModel, Prediction
from edgetrain.search.final import check_same_protocol
from edgetrain.search.run import DEADLINE_ATTR, search_loop, set_deadline, time_left_s
from edgetrain.search.space import load_space
from edgetrain.search.study import Search, objective
from edgetrain.train import RunConfig
from edgetrain.train.record import RunRecord

TINY_SPACE = str(Path(__file__).with_name("tiny-space.toml"))
DATA = "synthetic-pcb:per_class=10,size=32"
PROTOCOL = ["--set", "run.resolution=32", "--set", "run.epochs=1", "--set", "run.threads=1",
            "--set", "run.latency_repeat=1", "--set", "run.bn_recalibration_images=16"]  # fmt: skip


def _prediction(feasible: bool) -> Prediction:
    return Prediction(feasible, 900.0 if not feasible else 300.0, 500.0, 400.0, 0.01, 1, 1,
                      "micro-batch 16", 0.0)  # fmt: skip


def test_infeasible_genomes_are_never_trained(tmp_path, monkeypatch):
    space = load_space(TINY_SPACE)
    # middle_depth 1 is "predicted" over budget: those genomes must never reach the runner
    monkeypatch.setattr(
        search_study, "predict",
        lambda config, *a: (_prediction(config.model_args["middle_depth"] == 0), 100.0),
    )  # fmt: skip
    trained: list[str] = []

    def runner(config, out, resume):
        trained.append(config.model)
        assert config.model_args["middle_depth"] == 0
        return RunRecord.from_dict(json.loads(
            (Path(__file__).parents[1] / "train" / "data" / "record-v1.json").read_text()
        )).replace(val_accuracy=0.5)  # fmt: skip

    protocol = RunConfig(model="xception_lite", data=DATA, resolution=32, epochs=1)
    search = Search(space, protocol, 500.0, ("accuracy", "memory"), tmp_path, 6, 48,
                    BaselineModel(1.0), runner=runner)  # fmt: skip
    study = optuna.create_study(directions=search.directions,
                                sampler=optuna.samplers.RandomSampler(seed=0))  # fmt: skip
    study.optimize(lambda t: objective(search, t), n_trials=12)
    infeasible = [t for t in study.trials if t.user_attrs.get("infeasible")]
    assert infeasible and all(t.params["middle_depth"] == 1 for t in infeasible)
    assert all(t.user_attrs["prediction"]["predicted_peak_mb"] == 900.0 for t in infeasible)
    assert all(t.user_attrs["constraint"][0] > 0 for t in infeasible)
    # each feasible genome trained once; a repeat copies its values
    assert len(trained) == len(set(trained)) <= 2


def _search(out: Path, *extra: str) -> int:
    return main(["search", "--data", DATA, "--memory-budget", "4GiB", "--space", TINY_SPACE,
                 "--out", str(out), *PROTOCOL, *extra])  # fmt: skip


@pytest.mark.slow
def test_tiny_search_writes_fronts_and_resumes_without_repeats(tmp_path, capsys):
    out = tmp_path / "search"
    storage = f"sqlite:///{out / 'search.db'}"
    # the time budget ends the first call after one trial; a worker joins and completes three
    # once the budget is lifted
    assert _search(out, "--trials", "3", "--time-budget", "1s", "--final-seeds", "0") == 0
    assert "trial 0: epoch 1/1 done" in capsys.readouterr().out  # a trial says how it goes
    study = optuna.load_study(study_name="search-tiny", storage=storage)
    assert len(study.trials) == 1
    runs = sorted(p.name for p in (out / "runs").iterdir())
    worker = [
        "worker",
        "--storage",
        storage,
        "--study",
        "search-tiny",
        "--out",
        str(tmp_path / "w"),
    ]
    assert main(worker) == 0
    assert len(study.trials) == 1  # the search's time budget is spent: a worker starts nothing
    set_deadline(study, None)  # as a later invocation without --time-budget does
    assert main(worker) == 0
    assert len(study.trials) == 3
    assert _search(out, "--trials", "4", "--final-seeds", "1", "--top", "1",
                   "--baselines", "mobilenet_v2") == 0  # fmt: skip
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4
    trained = [t.user_attrs["run_id"] for t in complete if "duplicate_of" not in t.user_attrs]
    assert len(trained) == len(set(trained))  # no genome trained twice
    assert set(runs) <= {p.name for p in (out / "runs").iterdir()}  # the first runs were kept
    report = (out / "search-report.md").read_text()
    assert "**found** front" in report and "**hand-made** front" in report
    assert "mobilenet_v2" in report and (out / "fronts.png").is_file()
    table = report.split("## Final round: every model")[1]
    assert "| mobilenet_v2 | hand-made |" in table and "| found |" in table
    assert "the final round's" in report  # the final round's time is stated
    use = report.split("## Use it")[1]  # where the found model's runs are, and what to run
    assert "edgetrain export " in use and "/model.onnx" in use and "specs/xc-" in use
    spec_file = next((out / "specs").glob("xc-*.json"))
    assert spec_file.stem in report
    _a_second_space_shares_the_final_round(tmp_path, storage)


def _a_second_space_shares_the_final_round(tmp_path: Path, storage: str) -> None:
    # a MobileNetV2-family search (every family must get through a trial) joins the Xception
    # search's final round: its baseline is not trained again, the report has both candidates
    out = tmp_path / "mobilenet"
    space = str(Path(__file__).with_name("tiny-mobilenet-space.toml"))
    final = optuna.load_study(study_name="search-tiny-final", storage=storage)
    n_final = len(final.trials)
    assert main(["search", "--data", DATA, "--memory-budget", "4GiB", "--space", space,
                 "--out", str(out), "--storage", storage, *PROTOCOL, "--trials", "1",
                 "--final-study", "search-tiny-final", "--final-seeds", "1", "--top", "1",
                 "--baselines", "mobilenet_v2"]) == 0  # fmt: skip
    assert len(final.trials) == n_final + 1  # the new candidate only
    table = (out / "search-report.md").read_text().split("## Final round: every model")[1]
    found = [line for line in table.splitlines() if "| found |" in line]
    assert {line.split("|")[1].strip()[:3] for line in found} == {"xc-", "mnv"}
    assert "| mobilenet_v2 | hand-made |" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objectives", "accuracy,beauty"], "unknown: beauty"),
        (["--objectives", "memory"], "must include accuracy"),
        (["--memory-budget", "1MB"], "nothing in space tiny fits"),
        (["--trials", "0"], "--trials must be"),
        (["--time-budget", "soon"], "not a duration"),
        (["--sampler", "grid"], "--sampler must be"),
        (["--baselines", "resnet50"], "unknown model"),
        (["--final-folds", "1"], "--final-folds must be"),
    ],
)
def test_bad_input_stops_before_training(tmp_path, capsys, args, message):
    out = tmp_path / "s"
    base = ["search", "--data", DATA, "--memory-budget", "4GiB", "--space", TINY_SPACE,
            "--out", str(out), *PROTOCOL]  # fmt: skip
    if "--memory-budget" in args:
        base[base.index("--memory-budget") : base.index("--memory-budget") + 2] = []
    assert main([*base, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (out / "runs").exists()


def test_found_architecture_trains_by_file_and_by_id(tmp_path, monkeypatch):
    space = load_space(TINY_SPACE)
    spec = space.spec_of({"middle_depth": 0, "entry3_width": 16, "narrow": 16})
    from edgetrain.models.found import save_spec

    store = tmp_path / "specs"
    path = save_spec(spec, store)
    common = ["--data", "synthetic-pcb:per_class=8,size=32", "--resolution", "32", "--epochs",
              "1", "--threads", "1", "--no-progress"]  # fmt: skip
    assert main(["train", "--model", str(path), "--out", str(tmp_path / "a"), *common]) == 0
    monkeypatch.setenv("EDGETRAIN_SPECS", str(store))
    assert main(["train", "--model", spec.id, "--out", str(tmp_path / "b"), *common]) == 0
    for run in ("a", "b"):
        config = json.loads((tmp_path / run / "config.json").read_text())
        assert config["model"] == spec.id and config["model_args"]["family"] == "xception"
    monkeypatch.setenv("EDGETRAIN_SPECS", str(tmp_path / "empty"))
    assert main(["train", "--model", "xc-0123456789", "--out", str(tmp_path / "c"), *common]) == 2


def test_baseline_model_learns_the_offset():
    b = BaselineModel(data_mb=10.0)
    assert b.predict(300.0) == 310.0
    b.learn(300.0, 450.0)
    b.learn(320.0, 470.0)
    assert b.predict(300.0) == pytest.approx(450.0)


def test_a_shared_final_round_must_hold_one_protocol():
    final = optuna.create_study()
    ours = RunConfig(model="xception_lite", data=DATA, resolution=32, epochs=1).to_dict()
    check_same_protocol(final, ours)  # empty: anything goes
    final.enqueue_trial({}, user_attrs={"config": ours})
    check_same_protocol(final, {**ours, "model": "mobilenet_v2", "seed": 3})  # other cells
    with pytest.raises(EdgeTrainError, match="epochs, lr differ"):
        check_same_protocol(final, {**ours, "epochs": 2, "lr": 0.1})


def test_workers_keep_to_the_searchs_time_budget():
    study = optuna.create_study()
    assert time_left_s(study) is None  # never set: no budget
    set_deadline(study, 600.0)
    assert 590 < time_left_s(study) <= 600
    set_deadline(study, None)  # a later invocation without a budget lifts it
    assert time_left_s(study) is None
    study.set_user_attr(DEADLINE_ATTR, time.time() - 5)
    spent = SimpleNamespace(trials=5, time_budget_s=time_left_s(study))
    search_loop(spent, None, study, lambda *_: None)  # type: ignore[arg-type]
    assert not study.trials  # a worker joining after the deadline starts nothing


def test_failure_limit_stops_the_study():
    from optuna.trial import TrialState

    from edgetrain.search.run import _FailureLimit

    limit = _FailureLimit(limit=3)

    class _Study:  # study.stop() works only inside optimize(); the callback's call is what counts
        stopped = False

        def stop(self):
            self.stopped = True

    study = _Study()

    class _T:
        def __init__(self, state):
            self.state, self.system_attrs = state, {"fail_reason": "boom"}
            self.user_attrs: dict[str, str] = {}

    for state in (TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL):
        limit(study, _T(state))
    assert not limit.stopped  # a success in between resets the count
    limit(study, _T(TrialState.FAIL))
    limit(study, _T(TrialState.FAIL))
    assert limit.stopped and study.stopped and limit.last_error == "boom"


def _trained(study, spec_id, val_acc, mem_mb):
    record = {"val_accuracy": val_acc, "peak_above_baseline_mb": mem_mb, "status": "finished"}
    study.add_trial(optuna.trial.create_trial(
        values=[mem_mb, val_acc], user_attrs={"record": record, "spec_id": spec_id},
    ))  # fmt: skip


def test_candidates_rank_by_accuracy_whatever_the_objective_order():
    from edgetrain.search.final import candidates

    study = optuna.create_study(directions=["minimize", "maximize"])
    _trained(study, "xc-a", 0.90, 100.0)
    _trained(study, "xc-b", 0.97, 300.0)
    _trained(study, "xc-c", 0.80, 400.0)  # dominated by xc-b
    picks = candidates(study, ("memory", "accuracy"), top=3)
    assert [t.user_attrs["spec_id"] for t in picks] == ["xc-b", "xc-a"]


def test_a_resumed_search_must_search_the_same():
    from edgetrain.errors import EdgeTrainError
    from edgetrain.search.run import _check_same_search

    study = optuna.create_study()
    study.set_user_attr("search", {"space_def": 1, "protocol": {"epochs": 6}, "budget_mb": 1024,
                                   "objectives": ["accuracy"], "trials": 10})  # fmt: skip
    same = {"space_def": 1, "protocol": {"epochs": 6}, "budget_mb": 1024,
            "objectives": ["accuracy"], "trials": 40}  # fmt: skip
    _check_same_search(study, same)  # only the trial count grew
    with pytest.raises(EdgeTrainError, match="budget_mb differ"):
        _check_same_search(study, {**same, "budget_mb": 512})


def test_the_trainer_waits_for_the_watchers_verdict(tmp_path):
    import threading
    import time

    from edgetrain.train.rundir import RunDir

    run = RunDir(tmp_path)
    t0 = time.monotonic()
    run.wait_for_verdict(1, timeout_s=5)  # no watcher: no wait
    assert time.monotonic() - t0 < 1
    run.acknowledge_epoch(0)
    threading.Timer(0.3, lambda: run.request_stop("dominated")).start()
    run.wait_for_verdict(1, timeout_s=5)
    assert run.stop_requested() == "dominated"
    run.acknowledge_epoch(1)
    t0 = time.monotonic()
    run.wait_for_verdict(1, timeout_s=5)  # judged already
    assert time.monotonic() - t0 < 1


def test_a_resumed_search_learns_the_baseline_from_its_trials():
    from edgetrain.search.study import learn_baseline

    study = optuna.create_study(directions=["maximize", "minimize"])
    for model_rss, measured in ((300.0, 420.0), (310.0, 432.0)):
        study.add_trial(optuna.trial.create_trial(values=[0.9, 100.0], user_attrs={
            "prediction": {"model_rss_mb": model_rss}, "record": {"baseline_rss_mb": measured},
        }))  # fmt: skip
    search = Search(load_space(TINY_SPACE), RunConfig(model="xception_lite", data=DATA), 500.0,
                    ("accuracy", "memory"), Path("."), 6, 48, BaselineModel(10.0))  # fmt: skip
    assert learn_baseline(search, study) == 2
    assert search.baseline.predict(300.0) == pytest.approx(300.0 + 10.0 + 111.0)


def test_search_time_leaves_out_failed_trials():
    """A failed trial ends when a later worker notices it, maybe hours on: not search time."""
    import datetime as dt

    from edgetrain.search.report import trial_wall_s

    study = optuna.create_study(directions=["maximize"])
    t0 = dt.datetime(2026, 1, 1)
    for state, minutes in (
        (TrialState.COMPLETE, 3),
        (TrialState.COMPLETE, 5),
        (TrialState.FAIL, 600),
    ):
        study.add_trial(
            optuna.trial.FrozenTrial(
                number=0, state=state, value=0.5 if state == TrialState.COMPLETE else None,
                datetime_start=t0, datetime_complete=t0 + dt.timedelta(minutes=minutes),
                params={}, distributions={}, user_attrs={}, system_attrs={},
                intermediate_values={}, trial_id=0, values=None,
            )
        )  # fmt: skip
    assert trial_wall_s(study) == (2, 8 * 60.0)
