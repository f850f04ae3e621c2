"""Multi-stage training (transfer learning): e.g. head only, then everything, each stage a run.

`--stages head:60,all:20` (or the preset `paper`, the paper's schedule) trains stage 1 from
`--init`, and every later stage from the stage before. Each stage runs in a fresh process with
its own run directory and record, so the memory of each stage is measured on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgetrain.errors import EdgeTrainError
from edgetrain.train.config import RunConfig, parse_scope
from edgetrain.train.record import RunRecord
from edgetrain.train.rundir import RunDir

PRESETS = {"paper": "head:60,all:20"}  # Mih et al. 2024: frozen backbone 60 epochs, then all 20


def parse_stages(text: str) -> list[tuple[str, int]]:
    """'head:5,all:3' -> [('head', 5), ('all', 3)]; scopes as in --train-scope (last:N too)."""
    text = PRESETS.get(text, text)
    stages = []
    for part in text.split(","):
        scope, sep, epochs = part.strip().rpartition(":")
        try:
            n = int(epochs)
        except ValueError:
            n = 0
        if not sep or not scope or n < 1:
            raise EdgeTrainError(
                f"--stages takes SCOPE:EPOCHS[,SCOPE:EPOCHS...] (e.g. head:60,all:20) or "
                f"{', '.join(PRESETS)}; got {part!r}"
            )
        parse_scope(scope)
        stages.append((scope, n))
    return stages


def run_stages(
    config: RunConfig, stages: list[tuple[str, int]], out_dir: Path, *, log=print
) -> list[RunRecord]:
    """Train each stage in a fresh process; stage k starts from stage k-1's weights."""
    from edgetrain.train.subprocess import run_in_subprocess

    records = []
    init = config.init
    for i, (scope, epochs) in enumerate(stages, 1):
        stage = RunDir(out_dir / f"stage{i}-{scope.replace(':', '')}")
        cfg = config.replace(train_scope=scope, epochs=epochs, init=init)
        if stage.is_finished():
            record = stage.load_record()
            log(f"stage {i} ({scope}, {epochs} epochs) already done: {stage}")
        else:
            log(f"stage {i}: train scope {scope}, {epochs} epochs -> {stage}")
            record = run_in_subprocess(cfg, stage.path, resume=stage.is_started())
        records.append(record)
        init = str(stage.path)
    return records


def stage_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    """One flat row per stage (a table, and the --json output of a staged run)."""
    return [
        {
            "stage": i,
            "train_scope": r.config["train_scope"],
            "epochs": r.config["epochs"],
            "params_trainable": r.params_trainable,
            "test_accuracy": r.test_accuracy,
            "peak_rss_mb": r.peak_rss_mb,
            "peak_above_baseline_mb": r.peak_above_baseline_mb,
            "analytic_mb": r.analytic_mb,
            "epoch_s": r.epoch_s,
        }
        for i, r in enumerate(records, 1)
    ]
