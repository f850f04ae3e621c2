"""Training progress on stderr: epoch, step, loss, accuracy, images/s, current RSS.

On a terminal, a live rich progress bar. Without one (a log file, a service manager, CI), a bar
is drawn only when it stops, cut to 80 columns, after minutes of silence; so there a plain line
is printed every `line_every_s` seconds and at the end of each epoch instead.
"""

from __future__ import annotations

import time
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

LINE_EVERY_S = 5.0  # a plain progress line this often without a terminal


class TrainProgress:
    """A no-op when disabled (subprocess runs log one line per epoch instead)."""

    def __init__(
        self,
        *,
        enabled: bool,
        epochs: int,
        steps: int,
        console: Console | None = None,
        line_every_s: float = LINE_EVERY_S,
    ) -> None:
        self.enabled = enabled
        self.epochs = epochs
        self.steps = steps
        self._task = None
        self._console = console or Console(stderr=True)
        live = enabled and self._console.is_terminal
        self._progress = _bar(self._console) if live else None
        self._lines = (
            _PlainLines(self._console, epochs, steps, line_every_s)
            if enabled and not live
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
        if self._lines is not None:
            self._lines.start_epoch(epoch)
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
        if self._lines is not None:
            self._lines.step(fields)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1, **fields)

    def end_epoch(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        val = row.get("val_accuracy")
        if val is not None:
            self._console.print(
                f"  epoch {row['epoch']}: val acc {val:.3f}, {row['epoch_s']:.1f} s, "
                f"peak RSS {row['peak_rss_mb']:.0f} MB",
                soft_wrap=True,
                highlight=False,
            )


def _bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.3f}  "
            "{task.fields[img_s]:.1f} img/s  RSS {task.fields[rss_mb]:.0f} MB"
        ),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


class _PlainLines:
    """One line per `every_s` seconds and at each epoch's last step, never wrapped."""

    def __init__(self, console: Console, epochs: int, steps: int, every_s: float) -> None:
        self.console, self.epochs, self.steps, self.every_s = console, epochs, steps, every_s
        self.epoch, self.done, self.t_epoch, self.last = 0, 0, 0.0, 0.0

    def start_epoch(self, epoch: int) -> None:
        self.epoch, self.done = epoch, 0
        self.t_epoch = self.last = time.monotonic()

    def step(self, fields: dict[str, float]) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self.last < self.every_s and self.done < self.steps:
            return
        self.last = now
        elapsed = now - self.t_epoch
        left = elapsed / self.done * (self.steps - self.done)
        self.console.print(
            f"epoch {self.epoch + 1}/{self.epochs} step {self.done}/{self.steps}  "
            f"loss {fields.get('loss', 0.0):.4f}  acc {fields.get('acc', 0.0):.3f}  "
            f"{fields.get('img_s', 0.0):.1f} img/s  RSS {fields.get('rss_mb', 0.0):.0f} MB  "
            f"{_clock(elapsed)} elapsed, {_clock(left)} left in the epoch",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"
