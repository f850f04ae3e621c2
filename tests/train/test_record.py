"""The run record's schema: round trip, records written before the schema, missing fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgetrain import EdgeTrainError
from edgetrain.train.record import REQUIRED, SCHEMA_VERSION, RunRecord
from edgetrain.train.rundir import RunDir

# record.json of a quick-bench cell written by edgetrain 0.1.0, before the schema had a version
V1_RECORD = Path(__file__).parent / "data" / "record-v1.json"


def _minimal(**changes) -> dict:
    d = {
        "model": "mobilenet_v2",
        "data": "synthetic-pcb",
        "config": {"model": "mobilenet_v2", "data": "synthetic-pcb"},
        "test_accuracy": 0.75,
        "peak_rss_mb": 900.0,
        "mean_rss_mb": 800.0,
        "baseline_rss_mb": 500.0,
        "peak_above_baseline_mb": 400.0,
        "epoch_s": 3.5,
        "history": [{"epoch": 1}],
    }
    return {**d, **changes}


def test_round_trip_through_json(tmp_path):
    record = RunRecord.from_dict(_minimal(train_step_ms=12.5, classes=["a", "b"]))
    run = RunDir(tmp_path / "run")
    run.save_record(record)
    on_disk = json.loads(run.record.read_text())
    assert on_disk["schema_version"] == SCHEMA_VERSION
    back = run.load_record()
    assert back == record
    assert back.train_step_ms == 12.5 and back.classes == ["a", "b"]


def test_a_record_written_before_the_schema_loads():
    old = json.loads(V1_RECORD.read_text())
    assert "schema_version" not in old
    record = RunRecord.from_dict(old)
    assert record.schema_version == SCHEMA_VERSION
    assert record.model == old["model"] and record.test_accuracy == old["test_accuracy"]
    assert record.history == old["history"] and record.analytic == old["analytic"]
    # nothing is lost on the way back out: every old key is still there with its value
    out = record.to_dict()
    assert {k: out[k] for k in old} == old


@pytest.mark.parametrize("field", ["test_accuracy", "peak_above_baseline_mb", "config"])
def test_a_missing_field_is_named(field):
    d = _minimal()
    del d[field]
    with pytest.raises(EdgeTrainError, match=f"missing.*{field}"):
        RunRecord.from_dict(d, source="x/record.json")


def test_unknown_keys_are_kept_and_newer_versions_refused():
    record = RunRecord.from_dict(_minimal(made_by="another tool"))
    assert record.extra == {"made_by": "another tool"}
    assert record.to_dict()["made_by"] == "another tool"
    with pytest.raises(EdgeTrainError, match="newer than this edgetrain reads"):
        RunRecord.from_dict(_minimal(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(EdgeTrainError, match="JSON object"):
        RunRecord.from_dict([1, 2])


def test_required_fields_are_the_ones_every_consumer_reads():
    # the report's tables and the bench's objectives read these; a record must carry them
    assert {"model", "data", "test_accuracy", "peak_above_baseline_mb", "epoch_s"} <= set(REQUIRED)


def test_a_run_dir_without_a_record_says_so(tmp_path):
    with pytest.raises(EdgeTrainError, match="no finished run"):
        RunDir(tmp_path).load_record()
    (tmp_path / "record.json").write_text("{oops")
    with pytest.raises(EdgeTrainError, match="cannot read"):
        RunDir(tmp_path).load_record()
