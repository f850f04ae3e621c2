"""What a running cell is doing, read from its run directory while its child process trains.

The child writes history.csv after each epoch and progress.json every few seconds within one
(`RunDir.write_progress`); this reads both, never fails on a half-written or missing file, and
turns them into one status line: epoch, step, loss, images/s, RSS and an ETA.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from edgetrain.train.rundir import RunDir


@dataclass(frozen=True)
class CellStatus:
    epochs_done: float  # finished epochs + the fraction of the current one
    epochs: int | None
    text: str  # "epoch 3/10 step 40/120 loss 0.512 31 img/s RSS 412 MB ETA 5m12s"
    eta_s: float | None


def read_history(run: RunDir) -> list[dict[str, Any]]:
    """history.csv's rows (numbers as floats where they parse); [] while there is none."""
    try:
        rows = list(csv.DictReader(io.StringIO(run.history.read_text())))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
    return [{k: _num(v) for k, v in row.items()} for row in rows]


def _num(v: Any) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def cell_eta_s(
    history: list[dict[str, Any]], progress: dict[str, Any] | None, epochs: int
) -> float | None:
    """Seconds until the cell's last epoch ends: the mean finished epoch (validation included)
    times the epochs left, or, in the first epoch, the current epoch's pace."""
    done = len(history)
    if progress and int(progress.get("epoch", 0)) == done + 1:
        frac = float(progress.get("step", 0)) / max(float(progress.get("steps", 1)), 1.0)
    else:
        frac = 0.0
    epoch_times = [float(r["epoch_s"]) for r in history if isinstance(r.get("epoch_s"), float)]
    if epoch_times:
        per_epoch = sum(epoch_times) / len(epoch_times)
    elif progress and frac > 0 and progress.get("epoch_elapsed_s"):
        per_epoch = float(progress["epoch_elapsed_s"]) / frac
    else:
        return None
    return max(0.0, (epochs - done - frac) * per_epoch)


def cell_status(run: RunDir, epochs: int | None) -> CellStatus:
    """The status of the cell training in `run` (whatever its child has written so far)."""
    history = read_history(run)
    progress = run.read_progress()
    done = len(history)
    current = progress if progress and int(progress.get("epoch", 0)) == done + 1 else None
    parts: list[str] = []
    frac = 0.0
    if current:
        step, steps = int(current.get("step", 0)), int(current.get("steps", 0))
        frac = step / steps if steps else 0.0
        parts += [f"epoch {done + 1}/{epochs or '?'}", f"step {step}/{steps}"]
        parts += _fields(current.get("loss"), current.get("img_s"), current.get("rss_mb"))
    elif history:
        last = history[-1]
        parts.append(f"epoch {done}/{epochs or '?'} done")
        parts += _fields(
            last.get("train_loss"), last.get("train_images_per_s"), last.get("peak_rss_mb")
        )
    else:
        parts.append("preparing (data, model)")
    eta = cell_eta_s(history, progress, epochs) if epochs else None
    if eta is not None:
        parts.append(f"ETA {format_duration(eta)}")
    return CellStatus(epochs_done=done + frac, epochs=epochs, text="  ".join(parts), eta_s=eta)


def _fields(loss: Any, img_s: Any, rss_mb: Any) -> list[str]:
    out = []
    if isinstance(loss, float):
        out.append(f"loss {loss:.4f}")
    if isinstance(img_s, int | float):
        out.append(f"{img_s:.1f} img/s")
    if isinstance(rss_mb, int | float):
        out.append(f"RSS {rss_mb:.0f} MB")
    return out


def format_duration(s: float) -> str:
    """12 -> '12s', 312 -> '5m12s', 7322 -> '2h02m'."""
    s = round(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
