"""PNG plots of the report: Pareto scatters, training curves and RSS over time (matplotlib Agg).

Figures are built with `matplotlib.figure.Figure` on an Agg canvas, never through pyplot, so the
report neither depends on nor changes the process's global matplotlib backend and state.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import Bbox

from edgetrain.errors import EdgeTrainError
from edgetrain.fileio import read_text_bounded
from edgetrain.report.tables import Front, SummaryRow

FRONT_COLOR = "#d9480f"  # Pareto-optimal configurations
DOMINATED_COLOR = "#9aa0a6"
DPI = 120
_LINESTYLES = ("-", "--", ":", "-.")


def _mpl(text: str) -> str:
    """User text for matplotlib: `$` would start mathtext, so escape it."""
    return str(text).replace("$", r"\$")


def _short(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def model_colors(models: Sequence[str]) -> dict[str, str]:
    """A stable colour per model name (tab10, then tab20), the same in every plot of a report."""
    from matplotlib import colormaps

    names = sorted(set(models))
    palette = [colormaps["tab10"](i) for i in range(10)] + [
        colormaps["tab20"](i) for i in range(1, 20, 2)
    ]
    return {m: _hex(palette[i % len(palette)]) for i, m in enumerate(names)}


def _hex(rgba: tuple[float, ...]) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgba[:3])


# --- label placement ----------------------------------------------------------------------------


def _overlap(a: Bbox, b: Bbox) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


# offsets (points) tried for a label: rings of growing radius, the usual directions first
_OFFSETS = [
    (rad * math.cos(math.radians(a)), rad * math.sin(math.radians(a)))
    for rad in (6, 14, 24, 36, 50)
    for a in (30, -30, 150, -150, 0, 180, 90, -90, 60, -60, 120, -120)
]


def _place_labels(
    ax: Axes,
    xy: np.ndarray,
    labels: Sequence[str],
    *,
    strong: Sequence[bool],
    obstacles: Sequence[np.ndarray] = (),
) -> None:
    """Annotate every point with its label, choosing offsets that avoid other labels and points.

    Greedy: strong (Pareto-optimal) labels first, then the rest; for each, try offsets on rings
    of growing radius around the point and keep the first whose text box overlaps no placed
    label, no point marker, no obstacle polyline and stays inside the axes; otherwise the least
    bad one. Labels pushed far from their point get a thin leader line.
    """
    renderer = ax.figure.canvas.get_renderer()
    occupied = _occupied_boxes(ax, xy, obstacles)
    order = sorted(range(len(labels)), key=lambda i: (not strong[i], -xy[i][1]))
    for i in order:
        style = _label_style(strong[i])
        (dx, dy), box = _best_offset(ax, renderer, xy[i], labels[i], style, occupied)
        _annotate(ax, xy[i], labels[i], (dx, dy), style, leader=math.hypot(dx, dy) > 10)
        occupied.append(box)


def _occupied_boxes(ax: Axes, xy: np.ndarray, obstacles: Sequence[np.ndarray]) -> list[Bbox]:
    # display-space boxes a label must not cover: each point's marker, each obstacle segment
    r = 5.0 * DPI / 72
    occupied = [Bbox.from_bounds(x - r, y - r, 2 * r, 2 * r) for x, y in ax.transData.transform(xy)]
    for line in obstacles:  # polylines in data coordinates, e.g. the front's steps
        pts = ax.transData.transform(line)
        for (x0, y0), (x1, y1) in itertools.pairwise(pts):
            occupied.append(
                Bbox.from_extents(
                    min(x0, x1) - 1, min(y0, y1) - 1, max(x0, x1) + 1, max(y0, y1) + 1
                )
            )
    return occupied


def _label_style(strong: bool) -> dict:
    return {
        "fontsize": 8.5,
        "fontweight": "bold" if strong else "normal",
        "color": "#1f2937" if strong else "#4b5563",
    }


def _align(dx: float, dy: float) -> dict[str, str]:
    # anchor the text on the side facing its point, so the offset is the gap to the point
    return {
        "ha": "left" if dx > 0.5 else "right" if dx < -0.5 else "center",
        "va": "bottom" if dy > 0.5 else "top" if dy < -0.5 else "center",
    }


def _best_offset(
    ax: Axes, renderer, point: np.ndarray, label: str, style: dict, occupied: Sequence[Bbox]
) -> tuple[tuple[float, float], Bbox]:
    """The offset of least overlap (with `occupied` and outside the axes) and the label's box."""
    frame = ax.get_window_extent(renderer)
    best: tuple[float, tuple[float, float], Bbox] | None = None
    for dx, dy in _OFFSETS:
        text = ax.annotate(
            _mpl(label),
            point,
            xytext=(dx, dy),
            textcoords="offset points",
            **_align(dx, dy),
            **style,
        )
        box = text.get_window_extent(renderer).expanded(1.04, 1.1)
        text.remove()
        outside = box.width * box.height - _overlap(box, frame)
        cost = sum(_overlap(box, o) for o in occupied) + 4 * outside
        # nearer offsets win ties; a clean spot ends the search
        cost += 1e-3 * math.hypot(dx, dy)
        if best is None or cost < best[0]:
            best = (cost, (dx, dy), box)
        if cost < 1:
            break
    assert best is not None
    return best[1], best[2]


def _annotate(
    ax: Axes,
    point: np.ndarray,
    label: str,
    offset: tuple[float, float],
    style: dict,
    *,
    leader: bool,
):
    leader_line = {"arrowstyle": "-", "color": "#9ca3af", "lw": 0.7, "shrinkA": 0, "shrinkB": 4}
    ax.annotate(
        _mpl(label),
        point,
        xytext=offset,
        textcoords="offset points",
        **_align(*offset),
        bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.75},
        arrowprops=leader_line if leader else None,
        zorder=5,
        **style,
    )


def _freeze_layout(fig: Figure) -> None:
    # run the constrained layout once, then keep the axes still while labels are placed
    fig.canvas.draw()
    fig.set_layout_engine("none")


def _padded(lo: float, hi: float, frac: float, min_span: float) -> tuple[float, float]:
    span = max(hi - lo, min_span)
    mid = (lo + hi) / 2
    return mid - span / 2 - frac * span, mid + span / 2 + frac * span


# --- Pareto plots -------------------------------------------------------------------------------


def _run_values(row: SummaryRow, key: str, scale: float = 1.0) -> list[float]:
    return [float(r[key]) * scale if _num(r.get(key)) else math.nan for r in row.records]


def _pareto_axes(title: str, xlabel: str) -> tuple[Figure, Axes]:
    fig = _new_figure(8.6, 5.8)
    ax = fig.add_subplot()
    ax.set_title(_mpl(_short(title)), fontsize=11, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)  ↑ better")
    ax.grid(alpha=0.25)
    return fig, ax


def _seed_errorbar(
    ax: Axes, x: float, y: float, sx: float | None, sy: float | None, *, color: str, lw: float
) -> None:
    # ±1 sd over seeds of a configuration's mean; sy is a fraction, plotted in %
    if sx or sy:
        ax.errorbar(
            x,
            y,
            xerr=sx or None,
            yerr=(sy or 0) * 100 or None,
            fmt="none",
            ecolor=color,
            elinewidth=lw,
            alpha=0.6,
            zorder=2,
        )


def _label_points(ax: Axes, rows, front: Front, x, y, ok, obstacles=()) -> None:
    idx = np.flatnonzero(ok)
    _place_labels(
        ax,
        np.column_stack([x[idx], y[idx]]),
        [rows[i].label for i in idx],
        strong=[bool(front.mask[i]) for i in idx],
        obstacles=obstacles,
    )


def plot_pareto_memory(rows: Sequence[SummaryRow], front: Front, path: Path, *, title: str) -> Path:
    """Accuracy vs peak memory above baseline, one point per configuration, the front as steps.

    Configurations on the front are large orange points with bold labels, joined by the step line
    that bounds the region they dominate (shaded up to the reference point: its area is the
    hypervolume); dominated configurations are grey. Error bars are ±1 sd over seeds, small dots
    the single runs. Every point carries its label.
    """
    acc = front.values[:, 0] * 100
    mem = front.values[:, 1]
    ok = np.isfinite(acc) & np.isfinite(mem)
    fig, ax = _pareto_axes(title, "peak training RSS above baseline (MB)  ← better")
    run_x, run_y = _draw_memory_seeds(ax, rows, front, mem, acc, ok)
    dom = ok & ~front.mask
    ax.scatter(mem[dom], acc[dom], s=46, color=DOMINATED_COLOR, ec="white", lw=0.8, zorder=3)
    ax.scatter(
        mem[front.mask], acc[front.mask], s=90, color=FRONT_COLOR, ec="black", lw=0.9, zorder=4
    )
    ref_acc, ref_mem = front.reference[0] * 100, front.reference[1]
    _set_memory_limits(ax, [*mem[ok], *run_x], [*acc[ok], *run_y], ref_mem)
    steps = _draw_memory_front(ax, front, mem, acc, ok, ref_mem, ref_acc)
    ax.axvline(ref_mem, color="#6b7280", lw=0.8, ls="--", zorder=1)
    fig.legend(
        handles=_memory_legend(rows, ref_mem),
        loc="outside lower center",
        ncols=3,
        fontsize=8.5,
        frameon=False,
    )
    _freeze_layout(fig)
    _label_points(ax, rows, front, mem, acc, ok, obstacles=steps)
    return _save(fig, path)


def _draw_memory_seeds(ax: Axes, rows, front: Front, mem, acc, ok) -> tuple[list, list]:
    # configurations with several seeds: each run as a faint dot, the mean's sd as error bars
    run_x, run_y = [], []
    for i, row in enumerate(rows):
        color = FRONT_COLOR if front.mask[i] else DOMINATED_COLOR
        xs, ys = _run_values(row, "peak_above_baseline_mb"), _run_values(row, "test_accuracy", 100)
        run_x += xs
        run_y += ys
        if len(row.records) > 1:
            ax.scatter(xs, ys, s=12, color=color, alpha=0.35, lw=0, zorder=2)
            sx, sy = row.stats["peak_above_baseline_mb"].sd, row.stats["test_accuracy"].sd
            if ok[i]:
                _seed_errorbar(ax, mem[i], acc[i], sx, sy, color=color, lw=1)
    return run_x, run_y


def _set_memory_limits(ax: Axes, xs: list[float], ys: list[float], ref_mem: float) -> None:
    # x from 0 so memory compares by eye; the reference line stays in view
    finite_x = [v for v in xs if math.isfinite(v)]
    finite_y = [v for v in ys if math.isfinite(v)]
    x_hi = max([*finite_x, ref_mem if math.isfinite(ref_mem) else 0, 1.0])
    ax.set_xlim(0, x_hi * 1.05)
    if finite_y:
        lo, hi = _padded(min(finite_y), max(finite_y), 0.12, 4.0)
        ax.set_ylim(max(lo, -2.0 if min(finite_y) < 2 else 0.0), min(hi + 0.06 * (hi - lo), 104))


def _draw_memory_front(
    ax: Axes, front: Front, mem, acc, ok, ref_mem: float, ref_acc: float
) -> list[np.ndarray]:
    """The front's steps and the hypervolume they bound; returns the steps as label obstacles."""
    beat_ref = front.mask & ok & (mem < ref_mem) & (acc > ref_acc)
    if not (beat_ref.any() and math.isfinite(ref_mem)):
        return []
    order = np.lexsort((-acc[beat_ref], mem[beat_ref]))
    fx, fy = mem[beat_ref][order], acc[beat_ref][order]
    xs = np.append(fx, ref_mem)
    ys = np.append(fy, fy[-1])
    ax.fill_between(xs, ys, ref_acc, step="post", color=FRONT_COLOR, alpha=0.07, lw=0)
    ax.step(xs, ys, where="post", color=FRONT_COLOR, lw=1.6, zorder=3)
    ax.plot([fx[0], fx[0]], [ref_acc, fy[0]], color=FRONT_COLOR, lw=1.0, ls=":", zorder=3)
    y0, y1 = ax.get_ylim()
    if y0 <= ref_acc <= y1:
        ax.plot([ref_mem], [ref_acc], marker="x", color="black", ms=7, zorder=4)
    stair = np.repeat(xs, 2)[1:], np.repeat(ys, 2)[:-1]
    return [np.column_stack(stair)]


def _memory_legend(rows: Sequence[SummaryRow], ref_mem: float) -> list:
    handles = [
        Line2D(
            [], [], marker="o", ls="", color=FRONT_COLOR, mec="black", ms=9, label="Pareto-optimal"
        ),
        Line2D(
            [], [], marker="o", ls="", color=DOMINATED_COLOR, mec="white", ms=7, label="dominated"
        ),
        Line2D([], [], color=FRONT_COLOR, lw=1.6, label="front (step)"),
        Patch(color=FRONT_COLOR, alpha=0.15, label="dominated region = hypervolume"),
        Line2D([], [], color="#6b7280", lw=0.8, ls="--", label=f"reference {ref_mem:,.0f} MB"),
    ]
    if any(len(r.records) > 1 for r in rows):
        handles.append(
            Line2D([], [], marker="o", ls="", color="#6b7280", alpha=0.4, ms=4, label="single run")
        )
    return handles


def plot_pareto_time(rows: Sequence[SummaryRow], front: Front, path: Path, *, title: str) -> Path:
    """Accuracy vs training time per epoch, colour = peak memory above baseline, 3-objective front.

    Configurations on the (accuracy, memory, time) front are large points with a black ring and
    bold labels; dominated ones are small and faded. The colour scale is memory, so a point can
    be on the front by being fast, small or accurate.
    """
    acc = front.values[:, 0] * 100
    mem = front.values[:, 1]
    sec = front.values[:, 2]
    ok = np.isfinite(acc) & np.isfinite(sec)
    fig, ax = _pareto_axes(title, "training time per epoch (s)  ← better")
    norm = _memory_norm(mem[ok & np.isfinite(mem)])
    no_mem = _draw_time_points(ax, front, sec, acc, mem, ok, norm)
    for i, row in enumerate(rows):  # seeds: error bars of the means
        sx, sy = row.stats["epoch_s"].sd, row.stats["test_accuracy"].sd
        if ok[i]:
            _seed_errorbar(ax, sec[i], acc[i], sx, sy, color="#6b7280", lw=0.9)
    cbar = fig.colorbar(ScalarMappable(norm=norm, cmap=_MEMORY_CMAP), ax=ax, pad=0.01)
    cbar.set_label("peak RSS above baseline (MB)  (darker = less)")
    if ok.any():
        ax.set_xlim(0, float(sec[ok].max()) * 1.12)
        lo, hi = _padded(float(acc[ok].min()), float(acc[ok].max()), 0.12, 4.0)
        ax.set_ylim(max(lo, -2.0), min(hi + 0.06 * (hi - lo), 104))
    handles = _time_legend(with_no_mem=bool(no_mem.any()))
    fig.legend(
        handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8.5, frameon=False
    )
    _freeze_layout(fig)
    _label_points(ax, rows, front, sec, acc, ok)
    return _save(fig, path)


_MEMORY_CMAP = "viridis"  # dark = little memory


def _memory_norm(finite_mem: np.ndarray) -> Normalize:
    # from 0, so the colour says how much memory, not how much more than the smallest
    top = float(finite_mem.max()) * 1.05 if finite_mem.size and finite_mem.max() > 0 else 1
    return Normalize(vmin=0, vmax=top)


def _draw_time_points(ax: Axes, front: Front, sec, acc, mem, ok, norm: Normalize) -> np.ndarray:
    """Front members large and ringed, the rest faded, memory-less ones hollow; returns those."""
    on = ok & front.mask  # a front member always has a memory value
    off = ok & ~front.mask & np.isfinite(mem)
    no_mem = ok & ~np.isfinite(mem)  # no colour to give: hollow grey
    cmap = _MEMORY_CMAP
    ax.scatter(sec[no_mem], acc[no_mem], s=50, fc="none", ec="#6b7280", lw=1.2, zorder=3)
    ax.scatter(
        sec[off], acc[off], c=mem[off], cmap=cmap, norm=norm, s=50, alpha=0.55, lw=0, zorder=3
    )
    ax.scatter(
        sec[on], acc[on], c=mem[on], cmap=cmap, norm=norm, s=130, ec="black", lw=1.8, zorder=4
    )
    return no_mem


def _time_legend(*, with_no_mem: bool) -> list[Line2D]:
    handles = [
        Line2D([], [], marker="o", ls="", mfc="#d1d5db", mec="black", mew=1.8, ms=10,
               label="on the 3-objective front (accuracy, memory, time)"),
        Line2D([], [], marker="o", ls="", mfc="#d1d5db", mec="none", alpha=0.6, ms=7,
               label="dominated"),
    ]  # fmt: skip
    if with_no_mem:
        handles.append(Line2D([], [], marker="o", ls="", mfc="none", mec="#6b7280", ms=7,
                              label="memory not measured"))  # fmt: skip
    return handles


# --- per-run curves -----------------------------------------------------------------------------


def _group_style(rows: Sequence[SummaryRow], colors: dict[str, str]) -> list[tuple[str, str]]:
    inits = sorted({r.init for r in rows}, key=lambda s: (s != "scratch", s))
    return [(colors[r.model], _LINESTYLES[inits.index(r.init) % len(_LINESTYLES)]) for r in rows]


def plot_curves(
    rows: Sequence[SummaryRow], path: Path, colors: dict[str, str], *, title: str
) -> Path | None:
    """Validation accuracy and training loss per epoch, one line per run; None without history.

    Colour is the model, line style the init; runs of one configuration (seeds) share both, so
    their spread shows seed noise. Falls back to training accuracy when a run has no validation.
    """
    fig = _new_figure(10, 4.4)
    ax_acc, ax_loss = fig.subplots(1, 2)
    handles = []
    drew = False
    used_train_acc = False
    for row, (color, ls) in zip(rows, _group_style(rows, colors), strict=True):
        for rec in row.records:
            hist = [h for h in rec.get("history") or [] if isinstance(h, dict)]
            ep = [h.get("epoch") for h in hist]
            val = [h.get("val_accuracy") for h in hist]
            if all(v is None for v in val):
                val = [h.get("train_accuracy") for h in hist]
                used_train_acc = used_train_acc or any(v is not None for v in val)
            loss = [h.get("train_loss") for h in hist]
            for ax, ys, scale in ((ax_acc, val, 100), (ax_loss, loss, 1)):
                pts = [(e, y * scale) for e, y in zip(ep, ys, strict=True) if _num(e) and _num(y)]
                if pts:
                    x, y = zip(*pts, strict=True)
                    ax.plot(x, y, color=color, ls=ls, lw=1.4, marker="o", ms=2.5, alpha=0.85)
                    drew = True
        handles.append(Line2D([], [], color=color, ls=ls, lw=1.6, label=_mpl(row.label)))
    if not drew:
        return None
    what = "validation" if not used_train_acc else "validation (train where no val split)"
    ax_acc.set(xlabel="epoch", ylabel=f"{what} accuracy (%)")
    ax_loss.set(xlabel="epoch", ylabel="training loss")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.25)
    fig.suptitle(_mpl(_short(title, 100)), fontsize=11, x=0.01, ha="left")
    fig.legend(handles=handles, loc="outside right center", fontsize=8.5, frameon=False)
    return _save(fig, path)


def _num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


# a sample every 50 ms is about 2 MB an hour: days of training, still a bounded read
RSS_TRACE_MAX_BYTES = 256 * 2**20


def read_rss_trace(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(t_s, rss_mb) from a run's rss.csv, resumed segments laid end to end; None if unreadable.

    Each process segment of a resumed run restarts its clock at 0; a time that goes backwards
    starts a new segment, which is shifted to continue where the previous one stopped. Only a
    regular file of at most RSS_TRACE_MAX_BYTES is read (never /dev/zero or a FIFO).
    """
    try:
        text = read_text_bounded(Path(path), RSS_TRACE_MAX_BYTES, "memory trace")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        t = np.array([float(r["t_s"]) for r in rows])
        rss = np.array([float(r["rss_mb"]) for r in rows])
    except (EdgeTrainError, csv.Error, KeyError, ValueError, TypeError):
        return None
    if t.size == 0:
        return None
    back = np.flatnonzero(np.diff(t) < 0) + 1
    for start in back:
        t[start:] += t[start - 1] - t[start]
    return t, rss


def _decimate(t: np.ndarray, y: np.ndarray, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    # keep each bin's maximum: a plot of memory must not hide its peaks
    if t.size <= n:
        return t, y
    edges = np.linspace(0, t.size, n + 1).astype(int)[:-1]
    return t[edges], np.maximum.reduceat(y, edges)


def plot_rss(
    rows: Sequence[SummaryRow], path: Path, colors: dict[str, str], *, title: str
) -> Path | None:
    """Process RSS over training time, one line per run, from each run directory's rss.csv.

    Runs without a readable `run_dir/rss.csv` are skipped; returns None when no run has one.
    """
    fig = _new_figure(10, 4.2)
    ax = fig.add_subplot()
    handles = []
    drew = False
    for row, (color, ls) in zip(rows, _group_style(rows, colors), strict=True):
        row_drew = False
        for rec in row.records:
            run_dir = rec.get("run_dir")
            trace = read_rss_trace(Path(run_dir) / "rss.csv") if run_dir else None
            if trace is None:
                continue
            t, rss = _decimate(*trace)
            ax.plot(t, rss, color=color, ls=ls, lw=1.1, alpha=0.85)
            row_drew = drew = True
        if row_drew:
            handles.append(Line2D([], [], color=color, ls=ls, lw=1.6, label=_mpl(row.label)))
    if not drew:
        return None
    ax.set(xlabel="training time (s)", ylabel="process RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.25)
    ax.set_title(_mpl(_short(title, 100)), fontsize=11, loc="left")
    fig.legend(handles=handles, loc="outside right center", fontsize=8.5, frameon=False)
    return _save(fig, path)
