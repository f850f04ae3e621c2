"""The training progress bar (rich): epoch, step, loss, accuracy, images/s, current RSS."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainProgress:
    """A no-op when disabled (subprocess runs log one line per epoch instead)."""

    def __init__(self, *, enabled: bool, epochs: int, steps: int) -> None:
        self.enabled = enabled
        self.epochs = epochs
        self.steps = steps
        self._task = None
        self._progress = (
            Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(
                    "loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.3f}  "
                    "{task.fields[img_s]:.1f} img/s  RSS {task.fields[rss_mb]:.0f} MB"
                ),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            if enabled
            else None
        )

    def __enter__(self) -> TrainProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start_epoch(self, epoch: int) -> None:
        if self._progress is None:
            return
        self._task = self._progress.add_task(
            "train",
            total=self.steps,
            epoch=epoch + 1,
            epochs=self.epochs,
            loss=0.0,
            acc=0.0,
            img_s=0.0,
            rss_mb=0.0,
        )

    def step(self, **fields: float) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1, **fields)

    def end_epoch(self, row: dict[str, Any]) -> None:
        if self._progress is None:
            return
        val = row.get("val_accuracy")
        if val is not None:
            self._progress.console.print(
                f"  epoch {row['epoch']}: val acc {val:.3f}, {row['epoch_s']:.1f} s, "
                f"peak RSS {row['peak_rss_mb']:.0f} MB"
            )
