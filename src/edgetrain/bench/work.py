"""Running a study's cells in this process, with the display `bench`, `worker` and the search's
final round share."""

from __future__ import annotations

import threading
import time
from pathlib import Path


def work_cells(
    study,
    storage,
    out: Path,
    data,
    console,
    *,
    total: int,
    wait: bool,
    runner=None,
    poll_s: float = 1.0,
    line_every_s: float = 60.0,
) -> dict[str, int]:
    """Run the study's waiting cells here (`run_worker`) under a live display: the cells done
    of `total`, the running cell's epoch, step, loss, img/s, RSS and ETA, one line per cell
    that ends. Returns the counts of cells done and failed here."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgetrain.bench.progress import cell_status
    from edgetrain.bench.study import CellEvent, run_worker, study_status
    from edgetrain.train.rundir import RunDir

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    done0 = study_status(study)["complete"]
    cells_task = progress.add_task("cells", total=total, completed=min(done0, total))
    current: dict = {}
    stop = threading.Event()

    def poll_cell() -> None:
        # the child writes history.csv after each epoch and progress.json within one: show the
        # running cell's epoch, step, loss, img/s, RSS and ETA; without a live terminal (a log
        # file, CI), print a line when an epoch ends or every `line_every_s`
        last_line, last_epoch = 0.0, -1
        while not stop.wait(poll_s):
            run_dir, task = current.get("run_dir"), current.get("task")
            if run_dir is None or task is None:
                continue
            status = cell_status(RunDir(run_dir), current.get("epochs"))
            progress.update(
                task,
                completed=status.epochs_done,
                description=f"  {current['label']}  {status.text}",
            )
            now = time.monotonic()
            if not console.is_terminal and (
                int(status.epochs_done) != last_epoch or now - last_line >= line_every_s
            ):
                progress.console.print(f"  {current['label']}: {status.text}")
                last_line, last_epoch = now, int(status.epochs_done)

    def on_event(e: CellEvent) -> None:
        if e.kind == "start":
            epochs = _epochs_of(study, e.trial_number)
            current["run_dir"] = e.run_dir
            current["epochs"] = epochs
            current["label"] = e.label
            current["task"] = progress.add_task(f"  {e.label}", total=epochs)
        elif e.kind in ("done", "failed"):
            if current.get("task") is not None:
                progress.remove_task(current["task"])
            current.clear()
            progress.console.print(_cell_line(e))
            if e.kind == "done":
                progress.advance(cells_task)

    poller = threading.Thread(target=poll_cell, daemon=True)
    poller.start()
    try:
        with progress:
            return run_worker(
                study, storage, out, data, wait_for_running=wait, on_event=on_event, runner=runner
            )
    finally:
        stop.set()


def _cell_line(e) -> str:
    """The line printed when a cell ends."""
    if e.kind != "done":
        return f"[red]failed[/] {e.label}: {e.error}"
    r = e.record
    return (
        f"[green]done[/] {e.label}: test acc {r.test_accuracy:.3f}, peak "
        f"+{r.peak_above_baseline_mb:.0f} MB above baseline ({r.peak_rss_mb:.0f} MB RSS), "
        f"{r.epoch_s:.1f} s/epoch"
    )


def _epochs_of(study, number: int) -> int | None:
    try:
        return int(study.trials[number].user_attrs["config"]["epochs"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
