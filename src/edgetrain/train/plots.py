"""Plots of one run: loss/accuracy curves and RSS over time (PNG, matplotlib Agg)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from edgetrain.train.rundir import RunDir


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _floats(rows: list[dict[str, str]], key: str) -> list[float | None]:
    return [float(r[key]) if r.get(key) not in (None, "", "None") else None for r in rows]


def _envelope(
    xs: list[float], ys: list[float], bins: int
) -> tuple[list[float], list[float], list[float]]:
    """Min and max of ys in up to `bins` consecutive groups of samples."""
    n = max(1, len(xs) // bins)
    t, lo, hi = [], [], []
    for i in range(0, len(xs), n):
        chunk = ys[i : i + n]
        t.append(xs[i])
        lo.append(min(chunk))
        hi.append(max(chunk))
    return t, lo, hi


def plot_run(run_dir: Path) -> list[Path]:
    """Write curves.png and rss.png into `run_dir` from its history.csv and rss.csv."""
    run = RunDir(run_dir)
    hist = _read_csv(run.history)
    written = [_plot_curves(hist, run)]
    if run.rss_trace.exists():
        written.append(_plot_rss(_read_csv(run.rss_trace), hist, run))
    return written


def _plot_curves(hist: list[dict[str, str]], run: RunDir) -> Path:
    epochs = [int(r["epoch"]) for r in hist]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, label in (("train_loss", "train"), ("val_loss", "val")):
        ys = _floats(hist, key)
        if any(y is not None for y in ys):
            ax_loss.plot(epochs, ys, marker="o", ms=3, label=label)
    for key, label in (("train_accuracy", "train"), ("val_accuracy", "val")):
        ys = _floats(hist, key)
        if any(y is not None for y in ys):
            ax_acc.plot(epochs, ys, marker="o", ms=3, label=label)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(run.path.name, fontsize=9)
    fig.tight_layout()
    fig.savefig(run.curves_png, dpi=110)
    plt.close(fig)
    return run.curves_png


def _plot_rss(rows: list[dict[str, str]], hist: list[dict[str, str]], run: RunDir) -> Path:
    fig, ax = plt.subplots(figsize=(10, 3.5))
    # segments of a resumed run restart their clock; lay them end to end
    xs, offset, last_t = [], 0.0, None
    for r in rows:
        t = float(r["t_s"])
        if last_t is not None and t < last_t:
            offset += last_t
        xs.append(t + offset)
        last_t = t
    ys = [float(r["rss_mb"]) for r in rows]
    # 20 samples a second over a long run is a solid band: draw each bin's range (shaded)
    # and its maximum (the line that matters for a memory budget)
    t, lo, hi = _envelope(xs, ys, bins=600)
    ax.fill_between(t, lo, hi, alpha=0.3, lw=0, label="range per time bin")
    ax.plot(t, hi, lw=1, label="peak per time bin")
    base = hist[0].get("baseline_rss_mb") if hist else None
    if base:
        ax.axhline(float(base), color="grey", ls="--", lw=1, label="baseline (before step 1)")
        ax.legend(loc="lower right")
    ax.set(xlabel="time (s)", ylabel="RSS (MB)", title="process RSS during training")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(run.rss_png, dpi=110)
    plt.close(fig)
    return run.rss_png
