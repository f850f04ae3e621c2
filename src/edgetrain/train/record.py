"""The run record: every number a run produced, with units in the key names."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from edgetrain.train.checkpoint import atomic_write_text

RECORD = "record.json"
CONFIG = "config.json"
HISTORY = "history.csv"
RSS_TRACE = "rss.csv"


class RunRecord(dict):
    """A flat-ish dict (JSON-able) with attribute access for the most used keys.

    Keys always present after a finished run: `test_accuracy`, `peak_rss_mb`, `mean_rss_mb`,
    `baseline_rss_mb`, `peak_above_baseline_mb`, `analytic_mb` (+ `analytic` parts),
    `system_ram_permille`, `train_step_ms`, `epoch_s`, `infer_latency_ms_b1`,
    `infer_latency_ms_b16`, `params_trainable`, `config`.
    """

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def save(self, run_dir: Path) -> Path:
        path = Path(run_dir) / RECORD
        atomic_write_text(path, json.dumps(self, indent=2, sort_keys=False) + "\n")
        return path

    @classmethod
    def load(cls, run_dir: Path) -> RunRecord:
        path = Path(run_dir) / RECORD
        return cls(json.loads(path.read_text()))


def write_history_csv(path: Path, history: list[dict[str, Any]]) -> None:
    if not history:
        return
    fields = list(history[0])
    lines: list[str] = []

    class _Sink:
        def write(self, s: str) -> None:
            lines.append(s)

    w = csv.DictWriter(_Sink(), fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: row.get(k) for k in fields})
    atomic_write_text(path, "".join(lines))
