"""Run records from disk: every `record.json` under a folder (e.g. a bench output directory)."""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from edgetrain.errors import EdgeTrainError
from edgetrain.fileio import parse_json, read_text_bounded
from edgetrain.train.record import RunRecord

# far above any real record (a 101-class confusion matrix, thousands of skipped files), far
# below what would strain an edge device's memory
RECORD_MAX_BYTES = 64 * 2**20


def records_from_dir(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Read every `**/record.json` under `path`; return (records, warnings).

    Files that cannot be read (not a regular file, too large, not UTF-8), are not valid JSON
    (nested too deeply, integers beyond the parser's limit included), are not a JSON object,
    name no model or dataset, belong to a run that did not finish, or break the run-record
    schema (`edgetrain.train.record`: a missing field, a string where a number belongs, an
    accuracy outside [0, 1], negative memory) are skipped, each with one line
    "skipped FILE: REASON" in the warnings list, so one broken run never stops a report. Each
    record's "run_dir" is set to the folder holding its record.json (where its rss.csv lives),
    whatever the record said, since result folders get moved and copied. Records come back in
    path order. Raises `EdgeTrainError` if `path` is not a directory.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise EdgeTrainError(f"{root} is not a directory; give the folder that holds the runs")
    records: list[dict[str, Any]] = []
    warnings: list[str] = []
    for file in sorted(root.rglob("record.json")):
        try:
            records.append(_load_record(file))
        except EdgeTrainError as exc:
            reason = str(exc).removeprefix(f"{file}: ")
            warnings.append(f"skipped {file}: {reason}")
    return records, warnings


def _load_record(file: Path) -> dict[str, Any]:
    """One finished run's record, checked; `EdgeTrainError` says why it cannot be reported."""
    text = read_text_bounded(file, RECORD_MAX_BYTES, "run record")
    record = parse_json(text, str(file))
    if not isinstance(record, dict):
        raise EdgeTrainError("not a JSON object")
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    if not (record.get("model") or config.get("model")):
        raise EdgeTrainError("names no model")
    if not (record.get("dataset") or record.get("data") or config.get("data")):
        raise EdgeTrainError("names no dataset")
    status = record.get("status", "finished")
    if status != "finished":
        raise EdgeTrainError(f"run status is {reprlib.repr(status)}, not 'finished'")
    # the schema names what a record lacks or gets wrong; older records (no version) load
    typed = RunRecord.from_dict(record, source=str(file))
    return typed.replace(run_dir=str(file.parent)).to_dict()


def records_from_study(study: optuna.Study) -> list[dict[str, Any]]:
    """The run records of every completed cell of a bench study (one per cell: the latest if
    retried). A bench worker stores each finished cell's record in its trial's "record" user
    attribute, next to the cell's id in "cell_id"."""
    by_cell: dict[str, dict[str, Any]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        rec = t.user_attrs.get("record")
        if rec:
            by_cell[t.user_attrs.get("cell_id", str(t.number))] = rec
    return list(by_cell.values())
