"""`edgetrain report` on a folder of runs and on a bench's Optuna study, and its error exits."""

from __future__ import annotations

import ast
from pathlib import Path

import optuna
import pytest

from edgetrain.cli import main
from edgetrain.report.load import records_from_study

SRC = Path(__file__).resolve().parents[2] / "src" / "edgetrain"


def _bench_study(db: Path, name: str, cells: dict[str, dict]) -> optuna.Study:
    """A study shaped like a bench writes one: one completed trial per cell, record attached."""
    study = optuna.create_study(
        storage=f"sqlite:///{db}", study_name=name, directions=["maximize", "minimize"]
    )
    for cell_id, record in cells.items():
        study.enqueue_trial({}, user_attrs={"cell_id": cell_id, "record": record})
        trial = study.ask()
        study.tell(trial, [record["test_accuracy"], record["peak_above_baseline_mb"]])
    return study


def test_report_of_a_runs_folder_skips_broken_runs(tmp_path, make_record, make_run_dir, capsys):
    make_run_dir(tmp_path / "runs" / "a", make_record("xception", acc=0.93))
    make_run_dir(tmp_path / "runs" / "b", make_record("mobilenet_v2", acc=0.88))
    (tmp_path / "runs" / "bad").mkdir()
    (tmp_path / "runs" / "bad" / "record.json").write_text("{nope")
    assert main(["report", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "skipped" in out and "report:" in out
    md = (tmp_path / "runs" / "report" / "report.md").read_text()
    assert md.startswith("# edgetrain report: runs")
    assert f"skipped {tmp_path / 'runs' / 'bad' / 'record.json'}: not valid JSON" in md


def test_report_of_a_bench_folder(tmp_path, make_record, capsys):
    (tmp_path / "bench").mkdir()
    cells = {"c0": make_record("xception", acc=0.93), "c1": make_record("mobilenet_v2", acc=0.88)}
    _bench_study(tmp_path / "bench" / "study.db", "quick", cells)
    assert main(["report", str(tmp_path / "bench")]) == 0
    md = (tmp_path / "bench" / "report" / "report.md").read_text()
    assert md.startswith("# edgetrain report: quick") and "2 runs, 1 dataset(s)" in md
    assert "report:" in capsys.readouterr().out


def test_report_of_a_study_by_storage_and_name(tmp_path, make_record):
    db = tmp_path / "s.db"
    _bench_study(db, "one", {"c0": make_record()})
    _bench_study(db, "two", {"c0": make_record(), "c1": make_record("xception")})
    out = tmp_path / "rep"
    assert main(["report", "two", "--storage", f"sqlite:///{db}", "--out", str(out)]) == 0
    assert "2 runs" in (out / "report.md").read_text()


def test_study_without_finished_cells_writes_nothing(tmp_path, capsys):
    (tmp_path / "bench").mkdir()
    _bench_study(tmp_path / "bench" / "study.db", "empty", {})
    assert main(["report", str(tmp_path / "bench")]) == 0
    assert "no finished cells yet" in capsys.readouterr().out
    assert not (tmp_path / "bench" / "report").exists()


def test_records_from_study_keeps_the_latest_record_of_a_retried_cell(tmp_path, make_record):
    study = _bench_study(tmp_path / "s.db", "s", {"c0": make_record(acc=0.5)})
    study.enqueue_trial({}, user_attrs={"cell_id": "c0", "record": make_record(acc=0.7)})
    study.tell(study.ask(), [0.7, 400.0])
    assert [r["test_accuracy"] for r in records_from_study(study)] == [0.7]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{tmp}/missing"], "is neither a bench folder nor a folder of runs"),
        (["{tmp}"], "no record.json under"),
        (["{tmp}/two"], "holds 2 studies; use --storage"),
        (["nope", "--storage", "sqlite:///{tmp}/two/study.db"], "no study 'nope'"),
        (["s", "--storage", "bogus://user:pw@host/x"], "cannot open study storage bogus://***@"),
    ],
)
def test_report_errors_exit_2_with_a_message(tmp_path, make_record, capsys, argv, message):
    (tmp_path / "two").mkdir()
    for name in ("a", "b"):
        _bench_study(tmp_path / "two" / "study.db", name, {"c0": make_record()})
    assert main(["report", *(a.format(tmp=tmp_path) for a in argv)]) == 2
    err = capsys.readouterr().err
    assert message in err and "pw" not in err


def test_report_package_does_not_import_bench():
    # bench imports the report (to write one after a run); the other way round would be a cycle
    for path in (SRC / "report").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [a.name for a in node.names]
                assert not any(n.startswith("edgetrain.bench") for n in names), path.name
