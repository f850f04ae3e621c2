"""Hostile and careless input to search, report, bench and worker: one bad genome or record never
stops the whole job, Ctrl-C is one line and loses no trial, storage typos create nothing."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from edgetrain.bench.study import open_storage
from edgetrain.cli import main
from edgetrain.errors import EdgeTrainError
from edgetrain.search import run as search_run
from edgetrain.search import study as search_study
from edgetrain.search.feasibility import BaselineModel, Prediction
from edgetrain.search.report import write_report
from edgetrain.search.run import search_loop
from edgetrain.search.space import SearchSpace, load_space
from edgetrain.search.study import Search
from edgetrain.train import RunConfig
from edgetrain.train.record import RunRecord
from edgetrain.train.rundir import RunDir

TESTS = Path(__file__).resolve().parents[1]
TINY_SPACE = str(TESTS / "search" / "tiny-space.toml")
RECORD_V1 = TESTS / "train" / "data" / "record-v1.json"
DATA = "synthetic-pcb:per_class=10,size=32"
PROTOCOL = ["--set", "run.resolution=32", "--set", "run.epochs=1", "--set", "run.threads=1",
            "--set", "run.precision='fp32'", "--set", "run.latency_repeat=1",
            "--set", "run.bn_recalibration_images=16"]  # fmt: skip
TINY_EXPERIMENT = """
name = "tiny"
description = "one tiny model"
models = ["xception_lite"]
seeds = [0]

[datasets]
synthetic-pcb = "synthetic-pcb:per_class=6,size=32"

[run]
resolution = 32
epochs = 1
"""
MEMORY_CAP = 3 << 30  # address space of a child reading hostile files: a regression fails, alone


def _fits(*_args) -> tuple[Prediction, float]:
    return Prediction(True, 300.0, 200.0, 100.0, 0.01, 1, 1, "micro-batch 16", 0.0), 100.0


def _record(val_accuracy: float = 0.5) -> RunRecord:
    return RunRecord.from_dict(json.loads(RECORD_V1.read_text())).replace(val_accuracy=val_accuracy)


def _search_args(out: Path, *extra: str) -> list[str]:
    return ["search", "--data", DATA, "--memory-budget", "4GiB", "--space", TINY_SPACE,
            "--out", str(out), "--final-seeds", "0", *PROTOCOL, *extra]  # fmt: skip


# --- one bad genome ---------------------------------------------------------------------------


def test_a_genome_that_cannot_be_built_or_probed_is_infeasible_and_the_search_goes_on(
    tmp_path, monkeypatch
):
    space = load_space(TINY_SPACE)
    genomes = [
        {"middle_depth": d, "entry3_width": w, "narrow": 16} for d in (0, 1) for w in (16, 32)
    ]
    good, unbuildable, out_of_memory, no_memory = genomes
    ids = {space.spec_of(g).id: g for g in genomes}
    real_spec_of = SearchSpace.spec_of

    def spec_of(self, genome):
        if genome == unbuildable:  # e.g. a width beyond what the family can mean
            raise EdgeTrainError("entry.2.convs.0.width must be at most 4096, got 20000000")
        return real_spec_of(self, genome)

    def predict(config, *_args):
        genome = ids[config.model]
        if genome == out_of_memory:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to\n...")
        if genome == no_memory:
            raise MemoryError()
        return _fits()

    monkeypatch.setattr(SearchSpace, "spec_of", spec_of)
    monkeypatch.setattr(search_study, "predict", predict)
    trained = []

    def runner(config, out, resume=False):
        trained.append(config.model)
        return _record()

    messages: list[str] = []
    protocol = RunConfig(model="xception_lite", data=DATA, resolution=32, precision="fp32")
    search = Search(space, protocol, 500.0, ("accuracy", "memory"), tmp_path, 6, 48,
                    BaselineModel(1.0), emit=messages.append, runner=runner)  # fmt: skip
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(storage=storage, directions=search.directions)
    for genome in (unbuildable, out_of_memory, no_memory, good):
        study.enqueue_trial(genome)
    search_loop(SimpleNamespace(trials=4, time_budget_s=None), search, study, lambda *_: None)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE] * 4
    errors = [t.user_attrs.get("error") for t in study.trials]
    assert "at most 4096" in errors[0]
    assert errors[1].startswith("RuntimeError: DefaultCPUAllocator") and "\n" not in errors[1]
    assert errors[2].startswith("MemoryError")
    assert all(t.user_attrs.get("infeasible") for t in study.trials[:3])
    assert all(t.user_attrs["constraint"][0] > 0 for t in study.trials[:3])
    assert trained == [space.spec_of(good).id]
    assert any("cannot be built" in m for m in messages)
    assert sum("cannot be probed" in m for m in messages) == 2
    report = write_report(tmp_path, study, None, 0.0).read_text()
    listed = report.split("## Genomes that could not be built or probed")[1].split("##")[0]
    assert "3 genome(s)" in listed and "at most 4096" in listed and "MemoryError" in listed


# --- one bad record -------------------------------------------------------------------------


def _with_raw(record: dict, key: str, raw: str) -> str:
    """`record` as JSON text with `key`'s value written as `raw` (what json.dumps cannot)."""
    return json.dumps({**record, key: "@RAW@"}).replace('"@RAW@"', raw)


def _hostile_runs(root: Path) -> dict[str, str]:
    """A runs folder with one good run and one of every kind of bad record.json; returns
    {run name: what its skip reason must say}."""
    good = _record().to_dict()
    cases = {
        "huge-int": (_with_raw(good, "test_accuracy", "9" * 5001), "not valid JSON"),
        "nested": (_with_raw(good, "extra", "[" * 100_000 + "]" * 100_000), "nested too deeply"),
        "accuracy-1e308": (
            json.dumps({**good, "test_accuracy": 1e308}),
            "test_accuracy must be a fraction in [0, 1]",
        ),
        "nan-accuracy": (
            _with_raw(good, "test_accuracy", "NaN"),
            "test_accuracy must be a fraction in [0, 1]",
        ),
        "negative-memory": (
            json.dumps({**good, "peak_above_baseline_mb": -50.0}),
            "peak_above_baseline_mb must be a number >= 0",
        ),
        "string-number": (json.dumps({**good, "epoch_s": "fast"}), "epoch_s must be a number"),
        "good": (json.dumps(good), ""),
    }
    for name, (text, _) in cases.items():
        (root / name).mkdir(parents=True)
        (root / name / "record.json").write_text(text)
    (root / "good" / "rss.csv").symlink_to("/dev/zero")  # the run is fine, its trace is not
    (root / "good-too").mkdir()
    (root / "good-too" / "record.json").write_text(json.dumps(good))
    os.mkfifo(root / "good-too" / "rss.csv")
    (root / "zero").mkdir()
    (root / "zero" / "record.json").symlink_to("/dev/zero")
    (root / "fifo").mkdir()
    os.mkfifo(root / "fifo" / "record.json")
    reasons = {name: reason for name, (_, reason) in cases.items() if reason}
    return {**reasons, "zero": "not a regular file", "fifo": "not a regular file"}


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def test_report_skips_every_bad_record_with_its_reason(tmp_path):
    runs = tmp_path / "runs"
    reasons = _hostile_runs(runs)
    proc = subprocess.run(
        [sys.executable, "-m", "edgetrain", "report", str(runs)],
        capture_output=True, text=True, timeout=60, preexec_fn=_capped,
        env={**os.environ, "COLUMNS": "400"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    skipped = [line for line in proc.stdout.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == len(reasons)
    for name, reason in reasons.items():
        line = next(s for s in skipped if f"/{name}/record.json" in s)
        assert reason in line, line
    assert not any("skipped skipped" in s or ": skipped," in s for s in skipped)
    md = (runs / "report" / "report.md").read_text()
    assert "2 runs, " in md
    assert md.count("skipped ") >= len(reasons) and "skipped skipped" not in md


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"test_accuracy": 1.5}, "test_accuracy must be a fraction in [0, 1]"),
        ({"val_accuracy": -0.1}, "val_accuracy must be a fraction in [0, 1]"),
        ({"test_per_class_accuracy": [0.5, 2.0]}, "test_per_class_accuracy"),
        ({"peak_rss_mb": -1.0}, "peak_rss_mb must be a number >= 0"),
        ({"baseline_rss_mb": float("inf")}, "baseline_rss_mb must be a number >= 0"),
        ({"test_accuracy": "0.9"}, "test_accuracy must be a number"),
        ({"epoch_s": True}, "epoch_s must be a number"),
        ({"params_total": 1.5}, "params_total must be an integer"),
        ({"macs": -3}, "macs must be"),
        ({"history": "none"}, "history must be a list"),
        ({"config": [1]}, "config must be an object"),
        ({"model": 3}, "model must be a string"),
        ({"system_ram_permille": 1001.0}, "system_ram_permille must be"),
    ],
)
def test_the_record_schema_refuses_impossible_values(change, message):
    good = _record().to_dict()
    with pytest.raises(EdgeTrainError, match=r"bad\.json: ") as err:
        RunRecord.from_dict({**good, **change}, source="bad.json")
    assert message in str(err.value)


def test_real_records_still_load():
    record = _record()
    assert RunRecord.from_dict(record.to_dict()) == record


# --- Ctrl-C -----------------------------------------------------------------------------------


def test_an_interrupted_trial_is_retried_in_its_run_directory(tmp_path, monkeypatch, capsys):
    import edgetrain.train.subprocess as train_subprocess

    monkeypatch.setattr(search_run, "predict", _fits)
    monkeypatch.setattr(search_study, "predict", _fits)
    calls: list[tuple[Path, bool]] = []

    def interrupted(config, out_dir, *, resume=False):
        calls.append((Path(out_dir), resume))
        RunDir(out_dir).claim(config)  # the run had started when Ctrl-C came
        raise KeyboardInterrupt

    def finishes(config, out_dir, *, resume=False):
        calls.append((Path(out_dir), resume))
        return _record()

    out = tmp_path / "s"
    monkeypatch.setattr(train_subprocess, "run_in_subprocess", interrupted)
    assert main(_search_args(out, "--trials", "1")) == 130
    study = optuna.load_study(study_name="search-tiny", storage=f"sqlite:///{out / 'search.db'}")
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    monkeypatch.setattr(train_subprocess, "run_in_subprocess", finishes)
    assert main(_search_args(out, "--trials", "1")) == 0
    first, retry = study.get_trials()
    assert retry.state == TrialState.COMPLETE and retry.params == first.params
    assert retry.system_attrs["failed_trial"] == first.number
    assert calls[1] == (calls[0][0], True)  # the same run directory, resumed
    assert "interrupted" not in retry.user_attrs
    # the progress line says what the trial count counts
    assert "repeats and infeasible genomes count" in capsys.readouterr().out


_DRIVER = """
import sys, time
from edgetrain.search import run, study
from edgetrain.search.feasibility import Prediction
import edgetrain.train.subprocess as train_subprocess

def fits(*_args):
    return Prediction(True, 300.0, 200.0, 100.0, 0.01, 1, 1, "micro-batch 16", 0.0), 100.0

def runner(config, out_dir, *, resume=False):
    print("TRAINING", flush=True)
    time.sleep(120)

run.predict = study.predict = fits
train_subprocess.run_in_subprocess = runner
from edgetrain.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_during_a_search_prints_one_line(tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    proc = subprocess.Popen(
        [sys.executable, str(driver), *_search_args(tmp_path / "s", "--trials", "2")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for line in proc.stdout:
            if "TRAINING" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["edgetrain: interrupted"], err


_IMPORT_INTERRUPTED = """
import runpy, sys

class CtrlC:  # Ctrl-C while the commands' modules are still importing
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, CtrlC())
sys.argv = ["edgetrain", "report", "nowhere"]
runpy.run_module("edgetrain", run_name="__main__", alter_sys=True)
"""


def test_ctrl_c_while_importing_prints_one_line():
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_INTERRUPTED], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 130
    assert proc.stderr.strip().splitlines() == ["edgetrain: interrupted"], proc.stderr


# --- storage URLs -----------------------------------------------------------------------------


def _tiny_experiment(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_EXPERIMENT)
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["worker", "--storage", "sqlite:///{tmp}/typo/x.db", "--study", "s"], "no folder"),
        (["worker", "--storage", "sqlite:///{tmp}/x.db", "--study", "s"], "no database"),
        (["bench", "{toml}", "--storage", "sqlite:///{tmp}/typo/x.db"], "no folder"),
        (["report", "s", "--storage", "sqlite:///{tmp}/x.db"], "no database"),
        (_search_args(Path("{tmp}/out"), "--storage", "sqlite:///{tmp}/typo/x.db"), "no folder"),
    ],
)
def test_a_sqlite_url_that_names_nothing_creates_nothing(tmp_path, capsys, argv, message):
    work = tmp_path / "work"
    work.mkdir()
    toml = _tiny_experiment(tmp_path)
    args = [a.format(tmp=work, toml=toml) for a in argv]
    assert main([*args, "--out", str(tmp_path / "o")] if argv[0] == "bench" else args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert list(work.iterdir()) == []  # no folder, no database, no lock file


def test_a_missing_postgres_driver_names_the_extra(monkeypatch, capsys):
    for driver in ("psycopg2", "psycopg"):
        monkeypatch.setitem(sys.modules, driver, None)  # as if not installed
    for argv in (
        ["worker", "--storage", "postgresql://user:pw@db.invalid/x", "--study", "s"],
        ["report", "s", "--storage", "postgresql://user:pw@db.invalid/x"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "pip install -e '.[postgres]'" in err and "make setup EXTRAS=dev,postgres" in err
        assert "pw@" not in err
    readme = (TESTS.parent / "README.md").read_text()
    example = readme.split("# one study shared by several machines")[1].split("```")[0]
    assert "[postgres]" in example


def test_a_plain_postgresql_url_uses_the_installed_driver(capsys):
    # SQLAlchemy >= 2.1 reads postgresql:// as psycopg (3); the postgres extra installs psycopg2
    pytest.importorskip("psycopg2")
    assert main(["worker", "--storage", "postgresql://user:pw@127.0.0.1:1/x", "--study", "s"]) == 2
    err = capsys.readouterr().err
    assert "psycopg2.OperationalError" in err and "not installed" not in err
    assert "pw@" not in err and len(err.strip().splitlines()) == 1


# --- small things ---------------------------------------------------------------------------


def test_the_trial_count_says_what_it_counts(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    trials = help_text.split("--trials N")[-1].split("--time-budget")[0]
    assert "repeat" in trials and "infeasible" in trials


@pytest.mark.parametrize("command", ["bench", "search", "worker"])
def test_an_empty_study_name_is_refused(tmp_path, capsys, command):
    argv = {
        "bench": [
            "bench",
            str(_tiny_experiment(tmp_path)),
            "--out",
            str(tmp_path / "b"),
            "--study",
            "",
        ],
        "search": _search_args(tmp_path / "s", "--study", ""),
        "worker": ["worker", "--storage", f"sqlite:///{tmp_path / 'w.db'}", "--study", " "],
    }[command]
    assert main(argv) == 2
    assert "--study" in capsys.readouterr().err
    assert not (tmp_path / "b" / "runs").exists() and not (tmp_path / "s" / "runs").exists()
