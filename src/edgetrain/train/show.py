"""What a person reads in the terminal about a run: the memory plan and the record's summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edgetrain.train.planner import Plan
from edgetrain.train.record import RunRecord


def print_plan(plan: Plan, console: Any, *, limit: int = 12) -> None:
    """A table of the candidates (fastest first), the chosen one marked."""
    table = Table(
        title=f"memory plan: budget {plan.budget_mb:.0f} MB, baseline {plan.baseline_mb:.0f} MB "
        f"(model, data, runtime), gradients + optimizer {plan.fixed_mb:.0f} MB",
        title_justify="left",
    )
    for col in ("setting", "predicted peak MB", "predicted step s", "fits"):
        table.add_column(col, justify="left" if col == "setting" else "right")
    for c in plan.candidates[:limit]:
        mark = " (chosen)" if c == plan.chosen else ""
        style = "bold green" if c == plan.chosen else (None if c.fits else "dim")
        table.add_row(
            c.label() + mark,
            f"{c.predicted_peak_mb:.0f}",
            f"{c.predicted_step_s:.2f}",
            "yes" if c.fits else "no",
            style=style,
        )
    console.print(table)


def print_summary(record: RunRecord, out: Path) -> None:
    """The record's headline figures as a table."""

    table = Table(title=f"{record.model} on {record.data}", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    r = record
    rows = [
        ("test accuracy", _f(r.test_accuracy, ".4f")),
        ("  as trained (BatchNorm not recalibrated)", _f(r.test_accuracy_as_trained, ".4f")),
        ("test macro-F1", _f(r.test_macro_f1, ".4f")),
        ("peak RSS", _f(r.peak_rss_mb, ".0f", " MB")),
        ("mean RSS", _f(r.mean_rss_mb, ".0f", " MB")),
        ("baseline RSS (before step 1)", _f(r.baseline_rss_mb, ".0f", " MB")),
        ("peak above baseline", _f(r.peak_above_baseline_mb, ".0f", " MB")),
        ("analytic footprint", _f(r.analytic_mb, ".0f", " MB")),
        ("system RAM in use (paper's measure)", _f(r.system_ram_permille, ".0f", " ‰")),
        ("train step (median)", _f(r.train_step_ms, ".0f", " ms")),
        ("train throughput", _f(r.train_images_per_s, ".1f", " img/s")),
        ("epoch time (mean)", _f(r.epoch_s, ".1f", " s")),
        (
            "inference latency b1 / b16",
            f"{_f(r.infer_latency_ms_b1, '.1f')} / {_f(r.infer_latency_ms_b16, '.1f')} ms",
        ),
        ("trainable params", _f(r.params_trainable, ",")),
        ("device, precision", f"{r.accelerator or 'cpu'}, {r.precision or 'fp32'}"),
        ("images train / val / test", _counts(r.split_counts)),
        ("files skipped (see record.json)", f"{len(r.skipped_files):,}"),
    ]
    if r.gpu_peak_allocated_mb is not None:
        rows.insert(7, ("GPU peak allocated / reserved", f"{_f(r.gpu_peak_allocated_mb, '.0f')} / "
                        f"{_f(r.gpu_peak_reserved_mb, '.0f')} MB"))  # fmt: skip
    for k, v in rows:
        table.add_row(k, v)
    console = Console()
    console.print(table)
    console.print(f"run directory: {out}")


def _f(value: float | int | None, spec: str, unit: str = "") -> str:
    # a figure a run could not measure (a run resumed after its last epoch took no step) is "–"
    return "–" if value is None else f"{value:{spec}}{unit}"


def _counts(counts: dict[str, int]) -> str:
    return " / ".join(f"{counts.get(s, 0):,}" for s in ("train", "val", "test"))
