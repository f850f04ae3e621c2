"""records_from_dir: every record.json under a folder; broken ones become warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgetrain.errors import EdgeTrainError
from edgetrain.report import records_from_dir


def test_reads_nested_records_and_sets_run_dir(tmp_path: Path, make_record, make_run_dir) -> None:
    make_run_dir(tmp_path / "b" / "deep" / "run", make_record("xception", run_dir="/elsewhere"))
    make_run_dir(tmp_path / "a", make_record("mobilenet_v2"), rss=False)
    records, warnings = records_from_dir(tmp_path)
    assert warnings == []
    assert [r["model"] for r in records] == ["mobilenet_v2", "xception"]  # path order
    assert records[1]["run_dir"] == str(tmp_path / "b" / "deep" / "run")


def test_broken_records_are_skipped_with_a_warning(
    tmp_path: Path, make_record, make_run_dir
) -> None:
    make_run_dir(tmp_path / "good", make_record())
    cases = {
        "not-json": "{oops",
        "a-list": "[1, 2]",
        "no-model": json.dumps({"data": "synthetic-pcb"}),
        "no-data": json.dumps({"model": "xception"}),
        "failed": json.dumps(make_record(status="failed")),
    }
    for name, text in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "record.json").write_text(text)
    (tmp_path / "binary").mkdir()
    (tmp_path / "binary" / "record.json").write_bytes(b"\xff\xfe\x00")
    records, warnings = records_from_dir(tmp_path)
    assert len(records) == 1
    assert len(warnings) == len(cases) + 1
    assert all(w.startswith(f"skipped {tmp_path}") for w in warnings)
    assert any("not-json" in w and "not valid JSON" in w for w in warnings)
    assert any("'failed'" in w for w in warnings)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(EdgeTrainError, match="not a directory"):
        records_from_dir(tmp_path / "missing")
