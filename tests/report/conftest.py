"""Fake run records for the report tests: the keys a finished run writes, with chosen numbers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

RecordFactory = Callable[..., dict[str, Any]]


def fake_record(
    model: str = "mobilenet_v2",
    *,
    data: str = "synthetic-pcb",
    seed: int = 0,
    acc: float = 0.9,
    peak_above_mb: float = 400.0,
    epoch_s: float = 10.0,
    epochs: int = 3,
    init: str | None = None,
    train_scope: str = "all",
    classes: list[str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A record shaped like `edgetrain.train` writes, with the Pareto objectives as arguments."""
    baseline = 300.0
    history = [
        {
            "epoch": e + 1,
            "train_loss": 1.0 / (e + 1) + 0.01 * seed,
            "train_accuracy": min(1.0, acc - 0.1 + 0.05 * e),
            "val_loss": 1.2 / (e + 1),
            "val_accuracy": min(1.0, acc - 0.2 * (epochs - 1 - e) / max(epochs, 1)),
            "epoch_s": epoch_s,
            "peak_rss_mb": baseline + peak_above_mb,
            "mean_rss_mb": baseline + 0.7 * peak_above_mb,
        }
        for e in range(epochs)
    ]
    record: dict[str, Any] = {
        "status": "finished",
        "model": model,
        "data": data,
        "config": {
            "model": model,
            "data": data,
            "resolution": 64,
            "batch_size": 16,
            "epochs": epochs,
            "seed": seed,
            "init": init,
            "train_scope": train_scope,
            "extra": {},
        },
        "classes": classes if classes is not None else ["ok", "defect"],
        "test_accuracy": acc,
        "test_macro_f1": acc - 0.02,
        "peak_rss_mb": baseline + peak_above_mb,
        "mean_rss_mb": baseline + 0.7 * peak_above_mb,
        "baseline_rss_mb": baseline,
        "peak_above_baseline_mb": peak_above_mb,
        "analytic_mb": 0.8 * peak_above_mb,
        "system_ram_permille": 120.0 + peak_above_mb / 50,
        "train_step_ms": epoch_s * 10,
        "train_images_per_s": 1600 / epoch_s,
        "epoch_s": epoch_s,
        "total_train_s": epoch_s * epochs,
        "infer_latency_ms_b1": epoch_s / 2,
        "infer_latency_ms_b16": epoch_s * 4,
        "params_trainable": 2_353_253,
        "macs": 25_000_000,
        "history": history,
    }
    record.update(overrides)
    return record


def write_run(run_dir: Path, record: dict[str, Any], *, rss: bool = True) -> Path:
    """Lay out a run directory: record.json and (optionally) an rss.csv with a resumed segment."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "record.json").write_text(json.dumps(record))
    if rss:
        base, peak = record["baseline_rss_mb"], record["peak_rss_mb"]
        lines = ["t_s,rss_mb,epoch"]
        for i in range(40):  # two process segments: the clock restarts at 0 after "resume"
            t = (i % 20) * 0.5
            lines.append(f"{t:.3f},{base + (peak - base) * ((i % 5) / 4):.2f},{1 + i // 14}")
        (run_dir / "rss.csv").write_text("\n".join(lines) + "\n")
    return run_dir


@pytest.fixture(scope="session")
def make_record() -> RecordFactory:
    return fake_record


@pytest.fixture(scope="session")
def quick_records() -> list[dict[str, Any]]:
    """The shape of the quick study: four models x two seeds on synthetic-pcb.

    By construction, over (accuracy up, peak above baseline down): xception (best accuracy),
    xception_lite and mobilenet_v2 are non-dominated; efficientnet_v2_b1 (0.87 at 500 MB) is
    dominated by mobilenet_v2 (0.88 at 350 MB) but is the fastest, so it is on the 3-objective
    front.
    """
    spec = {
        "xception": (0.93, 900.0, 40.0),
        "xception_lite": (0.92, 700.0, 28.0),
        "mobilenet_v2": (0.88, 350.0, 12.0),
        "efficientnet_v2_b1": (0.87, 500.0, 9.0),
    }
    out = []
    for model, (acc, mem, sec) in spec.items():
        for seed in (0, 1):
            jitter = 0.004 * (1 if seed else -1)
            out.append(
                fake_record(
                    model,
                    seed=seed,
                    acc=acc + jitter,
                    peak_above_mb=mem + 10 * seed,
                    epoch_s=sec + 0.5 * seed,
                )
            )
    return out


@pytest.fixture(scope="session")
def make_run_dir() -> Callable[..., Path]:
    return write_run
