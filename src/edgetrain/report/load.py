"""Run records from disk: every `record.json` under a folder (e.g. a bench output directory)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from edgetrain.errors import EdgeTrainError
from edgetrain.train.record import RunRecord


def records_from_dir(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Read every `**/record.json` under `path`; return (records, warnings).

    Files that cannot be read, are not valid JSON, are not a JSON object, name no model or
    dataset, belong to a run that did not finish, or lack a field the run-record schema requires
    (`edgetrain.train.record`) are skipped, each with one line in the
    warnings list, so one broken run never stops a report. Each record's "run_dir" is set to the
    folder holding its record.json (where its rss.csv lives), whatever the record said, since
    result folders get moved and copied. Records come back in path order. Raises
    `EdgeTrainError` if `path` is not a directory.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise EdgeTrainError(f"{root} is not a directory; give the folder that holds the runs")
    records: list[dict[str, Any]] = []
    warnings: list[str] = []
    for file in sorted(root.rglob("record.json")):
        try:
            record = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            warnings.append(f"{file}: skipped, unreadable ({type(exc).__name__}: {exc})")
            continue
        if not isinstance(record, dict):
            warnings.append(f"{file}: skipped, not a JSON object")
            continue
        config = record.get("config") if isinstance(record.get("config"), dict) else {}
        if not (record.get("model") or config.get("model")):
            warnings.append(f"{file}: skipped, names no model")
            continue
        if not (record.get("dataset") or record.get("data") or config.get("data")):
            warnings.append(f"{file}: skipped, names no dataset")
            continue
        status = record.get("status", "finished")
        if status != "finished":
            warnings.append(f"{file}: skipped, run status is {status!r}, not 'finished'")
            continue
        try:  # the schema names what a record lacks; older records (no version) load as they are
            typed = RunRecord.from_dict(record, source=str(file))
        except EdgeTrainError as exc:
            warnings.append(f"skipped, {exc}")
            continue
        records.append(typed.replace(run_dir=str(file.parent)).to_dict())
    return records, warnings


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
