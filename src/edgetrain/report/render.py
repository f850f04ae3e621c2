"""The report: Markdown, one self-contained HTML file and PNG plots from a list of run records.

The content is built once as a list of blocks (headings, paragraphs, tables, figures) and then
written twice, as Markdown and as HTML, so the two always say the same. Every string that comes
from user data (dataset refs, class and model names, paths, the title) is plain text in a block
and escaped by the writer: `html.escape` in HTML, plus `|` in Markdown tables.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import edgetrain.report.plots as plots
from edgetrain.objectives import by_report_field
from edgetrain.report.tables import (
    COLUMNS,
    OBJECTIVES_MEMORY,
    OBJECTIVES_MEMORY_TIME,
    Front,
    SummaryRow,
    format_number,
    format_stat,
    pareto_front,
    row_cells,
    summarize,
)

# --- blocks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Strong:
    text: str


Inline = str | Strong


@dataclass
class Heading:
    level: int
    text: str
    anchor: str | None = None  # our own ids only, never user data


@dataclass
class Para:
    parts: Sequence[Inline]
    css: str | None = None


@dataclass
class Bullets:
    items: Sequence[Sequence[Inline]]


@dataclass
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    numeric: Sequence[bool]
    header_help: Sequence[str] = ()
    row_css: Sequence[str] = ()
    marks: Sequence[int] = ()  # columns of check marks, centred


@dataclass
class Figure:
    path: Path
    rel: str  # path relative to the report, for Markdown
    alt: str
    caption: Sequence[Inline] = field(default_factory=list)


Block = Heading | Para | Bullets | Table | Figure

# --- content --------------------------------------------------------------------------------------


def _obj_name(key: str) -> str:
    """What a front's column is called, from the one objective table (else the field)."""
    o = by_report_field(key)
    return o.label if o else key


def _obj_unit(key: str) -> str:
    o = by_report_field(key)
    return o.unit if o else ""


_PLOT_NAME = re.compile(
    r"\d{2,}-[a-z0-9-]*-[0-9a-f]{6}-(pareto-memory|pareto-time|curves|rss)\.png"
)


def _slug(text: str) -> str:
    base = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "dataset"
    return f"{base}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"


def _obj_value(key: str, value: float) -> str:
    if key == "test_accuracy":
        return (
            f"{value * 100:g}\u00a0%"
            if value in (0, 1)
            else f"{format_number(value * 100, 1)}\u00a0%"
        )
    return f"{format_number(value)}\u00a0{_obj_unit(key)}".strip()


def _reference_text(front: Front) -> str:
    parts = []
    for key, value, given in zip(front.keys, front.reference, front.reference_given, strict=True):
        if given:
            how = "given"
        elif key == "test_accuracy":
            how = "default: 0"
        else:
            how = "default: 1.1 × worst observed"
        parts.append(f"{_obj_name(key)} {_obj_value(key, value)} ({how})")
    return "; ".join(parts)


def _hv_units(front: Front) -> str:
    units = ["accuracy" if _obj_unit(k) == "%" else _obj_unit(k) or k for k in front.keys]
    return " × ".join(units)


def _ideal_text(front: Front) -> str:
    parts = []
    for k in front.keys:
        o = by_report_field(k)
        if o is None:
            parts.append(k)
        elif o.unit == "%":
            parts.append(f"{o.ideal * 100:g} % {o.label}")
        else:
            parts.append(f"{o.ideal:g} {o.unit}")
    return ", ".join(parts)


def _front_blocks(
    rows: Sequence[SummaryRow], front: Front, figure: Figure | None, caption: Sequence[Inline]
) -> list[Block]:
    names = [rows[i].label for i in range(len(rows)) if front.mask[i]]
    n_valid = int((~np.isnan(front.values).any(axis=1)).sum())
    blocks: list[Block] = []
    if not names:
        blocks.append(Para(["No configuration has all of these objectives measured."]))
        return blocks
    said: list[Inline] = [f"{len(names)} of {n_valid} configurations are non-dominated: "]
    for k, name in enumerate(names):
        said += [Strong(name), ", " if k < len(names) - 1 else "."]
    blocks.append(Para(said))
    hv = (
        f"Hypervolume {format_number(front.hypervolume, 4 if front.hypervolume < 10 else None)} "
        f"({_hv_units(front)})"
    )
    if math.isfinite(front.hv_share):
        hv += (
            f" = {front.hv_share * 100:.1f} % of the box between the reference point and the ideal "
            f"point ({_ideal_text(front)})"
        )
    blocks.append(Para([hv + ". Reference point: " + _reference_text(front) + "."]))
    headers = [
        "model",
        "init",
        *(f"{_obj_name(k)} ({_obj_unit(k)})" if by_report_field(k) else k for k in front.keys),
    ]
    kinds = ["percent" if k == "test_accuracy" else "number" for k in front.keys]
    table_rows = [
        [
            row.model,
            row.init,
            *(format_stat(row.stats[k], kd) for k, kd in zip(front.keys, kinds, strict=True)),
        ]
        for row, on in zip(rows, front.mask, strict=True)
        if on
    ]
    blocks.append(Table(headers, table_rows, [False, False, *([True] * len(front.keys))]))
    if figure is not None:
        figure.caption = caption
        blocks.append(figure)
    return blocks


def _classes_text(rows: Sequence[SummaryRow]) -> list[Inline]:
    classes: list[str] = []
    refs: list[str] = []
    for row in rows:
        for rec in row.records:
            cl = rec.get("classes")
            if isinstance(cl, list) and not classes:
                classes = [str(c) for c in cl]
            ref = rec.get("data")
            if ref and str(ref) not in refs:
                refs.append(str(ref))
    out: list[Inline] = []
    n_runs = sum(r.n_runs for r in rows)
    out.append(
        f"{n_runs} runs in {len(rows)} configurations (model × init; mean ± sd over seeds). "
    )
    if classes:
        shown = ", ".join(classes[:15])
        more = f", … ({len(classes) - 15} more)" if len(classes) > 15 else ""
        out.append(f"{len(classes)} classes: {shown}{more}. ")
    if refs:
        out.append("Data: " + "; ".join(refs) + ".")
    return out


def _how_to_read(reference: Mapping[str, float] | None) -> Bullets:
    ref = (
        "Reference point for the hypervolume: accuracy 0 and, for memory and time, 1.1 × the worst "
        "value observed in that dataset (so every configuration contributes), unless a fixed "
        "reference was given"
    )
    if reference:
        ref += " (given here: " + ", ".join(f"{k} = {v:g}" for k, v in reference.items()) + ")"
    return Bullets(
        [
            [
                Strong("Memory"),
                ": process RSS (resident memory) of the training process, sampled while it trains; "
                "MB = 2²⁰ bytes. ",
                Strong("peak − baseline"),
                " is the peak minus the RSS with model and data ready before the first step: the "
                "memory training itself needs. ",
                Strong("system RAM ‰"),
                " is the paper's measure (1000 × share of the machine's RAM in use), which mostly "
                "measures the framework's baseline.",
            ],
            [
                "Numbers are mean ± sample standard deviation (n − 1) over seeds; the ± is shown "
                "only when a configuration has more than one run."
            ],
            [
                Strong("Pareto-optimal"),
                " (non-dominated): no other configuration is at least as good in every objective "
                "and better in one. Each configuration is one point at its mean over seeds; rows "
                "of the table on the accuracy–memory front are highlighted, and the last two "
                "columns tick the fronts a configuration is on: accuracy vs memory, and "
                "accuracy, memory and time per epoch.",
            ],
            [
                Strong("Hypervolume"),
                ": the size of the objective region the front dominates, bounded by a reference "
                "point; larger is better. " + ref + ".",
            ],
        ]
    )


def _dataset_blocks(
    index: int,
    dataset: str,
    rows: list[SummaryRow],
    plots_dir: Path,
    colors: dict[str, str],
    fronts: tuple[Front, Front],
    notes: list[str],
) -> list[Block]:
    front2, front3 = fronts
    figures = _Figures(plots_dir, f"{index:02d}-{_slug(dataset)}", dataset, notes)
    blocks: list[Block] = [
        Heading(2, f"Dataset: {dataset}", anchor=f"dataset-{index}"),
        Para(_classes_text(rows)),
        _summary_table(rows, front2, front3),
        *verdict_blocks(rows),
    ]
    # the plot functions are looked up here, at call time, not frozen into the section specs
    for front, section, plot in (
        (front2, _MEMORY_FRONT, plots.plot_pareto_memory),
        (front3, _TIME_FRONT, plots.plot_pareto_time),
    ):
        blocks += _pareto_section(rows, front, figures, section, plot)
    for section, plot in ((_CURVES, plots.plot_curves), (_RSS, plots.plot_rss)):
        blocks += _run_plot_section(rows, colors, figures, section, plot)
    return blocks


def _points(x: float | None, sign: bool = True) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{100 * x:+.1f}" if sign else f"{100 * x:.1f}"


def verdict_blocks(rows: Sequence[SummaryRow]) -> list[Block]:
    """Runs that did not learn, the paired verdicts and the dominance table of one dataset."""
    from edgetrain.report.verdicts import dominance, verdicts

    blocks: list[Block] = []
    flagged = [r for r in rows if r.not_learned]
    if flagged:
        blocks.append(
            Para(
                [
                    Strong("Did not learn"),
                    " (left off every front): ",
                    "; ".join(f"{r.label}: {r.not_learned}" for r in flagged),
                    ".",
                ],
                css="warn",
            )
        )
    found = verdicts(rows)
    if not found:
        return blocks
    blocks += [
        Heading(3, "Paired verdicts: A − B over the same seeds and folds"),
        Para(
            [
                "Test accuracy difference per (seed, fold) pair, its mean and a Student-t 95 % "
                "confidence interval over the pairs: ",
                Strong("better"),
                " when the interval lies above 0, ",
                Strong("worse"),
                " below, else not distinguishable.",
            ]
        ),
        Table(
            ["A", "B", "pairs", "A − B (points)", "95 % interval", "verdict"],
            [
                [
                    v.a,
                    v.b,
                    str(v.paired.n),
                    _points(v.paired.mean),
                    f"[{_points(v.paired.low)}, {_points(v.paired.high)}]",
                    v.paired.verdict,
                ]
                for v in found
            ],
            [False, False, True, True, False, False],
        ),
    ]
    table = dominance(rows, found)
    if table:
        blocks += [
            Heading(3, "Dominance: the leanest found model not worse than each hand-made one"),
            Table(
                ["hand-made", "memory (MB)", "found", "memory (MB)", "share", "gain (points)",
                 "verdict"],
                [
                    [
                        d.hand_made,
                        format_number(d.hand_made_mb),
                        d.found or "none at least as accurate",
                        format_number(d.found_mb) if d.found else "–",
                        f"{100 * d.memory_share:.0f} %" if d.found else "–",
                        _points(d.mean_gain) if d.found else "–",
                        d.verdict or "–",
                    ]
                    for d in table
                ],
                [False, True, False, True, True, True, False],
            ),
        ]  # fmt: skip
    return blocks


def _summary_table(rows: Sequence[SummaryRow], front2: Front, front3: Front) -> Table:
    # one row per configuration; the accuracy-memory front is highlighted and both fronts ticked
    headers = ["model", "init", "runs", *(c.header for c in COLUMNS), "front: acc–mem", "+ time"]
    helps = [
        "architecture",
        "starting weights: scratch, or the run they came from",
        "runs (seeds) averaged",
        *(c.help for c in COLUMNS),
        "Pareto-optimal over (accuracy, peak RSS above baseline)",
        "Pareto-optimal over (accuracy, peak RSS above baseline, time per epoch)",
    ]
    table_rows = [
        [
            row.model,
            row.init,
            str(row.n_runs),
            *row_cells(row),
            "✓" if front2.mask[i] else "",
            "✓" if front3.mask[i] else "",
        ]
        for i, row in enumerate(rows)
    ]
    css = ["front" if front2.mask[i] else "" for i in range(len(rows))]
    numeric = [False, False, True, *([True] * len(COLUMNS)), False, False]
    return Table(
        headers, table_rows, numeric, helps, css, marks=(len(headers) - 2, len(headers) - 1)
    )


@dataclass(frozen=True)
class _PlotSection:
    """The fixed text of one plot section of a dataset; "{dataset}" in alt and title is filled."""

    heading: str
    name: str  # the PNG's suffix, one of those _PLOT_NAME knows
    alt: str
    title: str
    caption: tuple[Inline, ...]
    missing: str = ""  # said instead of the figure when there is nothing to plot


_MEMORY_FRONT = _PlotSection(
    heading="Pareto front: accuracy ↑ vs peak memory above baseline ↓",
    name="pareto-memory",
    alt="{dataset}: test accuracy vs peak RSS above baseline",
    title="{dataset}: accuracy vs training memory",
    caption=(
        Strong("How to read this:"),
        " up and to the left is better. Orange points joined by the step line are "
        "Pareto-optimal: every grey point has a configuration to its upper left that beats "
        "it on both. The shaded area up to the dashed reference line is the hypervolume.",
    ),
)
_TIME_FRONT = _PlotSection(
    heading="Pareto front: accuracy ↑, memory ↓, training time per epoch ↓",
    name="pareto-time",
    alt="{dataset}: test accuracy vs training time per epoch, colour = memory",
    title="{dataset}: accuracy vs training time (colour = memory)",
    caption=(
        Strong("How to read this:"),
        " up and to the left is better; darker colour = less memory. Points with a black ring "
        "are Pareto-optimal over all three objectives: a point can earn its place by being "
        "fast, small or accurate, so it may sit below a faster one if it needs less memory.",
    ),
)
_CURVES = _PlotSection(
    heading="Training curves",
    name="curves",
    alt="{dataset}: validation accuracy and training loss per epoch",
    title="{dataset}: per-epoch curves",
    caption=(
        Strong("How to read this:"),
        " one line per run; colour = model, line style = init. Lines of one configuration "
        "that spread apart show seed noise; a validation curve that falls while the loss "
        "keeps dropping is overfitting.",
    ),
    missing="No per-epoch history in these records.",
)
_RSS = _PlotSection(
    heading="Memory over time",
    name="rss",
    alt="{dataset}: process RSS over training time",
    title="{dataset}: RSS during training",
    caption=(
        Strong("How to read this:"),
        " resident memory of each run's process over its training time (resumed runs laid end "
        "to end); the level before the first rise is the baseline, the highest point the peak.",
    ),
    missing="No rss.csv in the runs' directories (or no run directory recorded): skipped.",
)


@dataclass
class _Figures:
    """Draws a dataset's plots into `plots_dir`; a plot that fails becomes a note, not an error."""

    plots_dir: Path
    slug: str  # "NN-dataset-hash": unique per dataset, and what write_report cleans up
    dataset: str
    notes: list[str]

    def title(self, section: _PlotSection) -> str:
        return section.title.format(dataset=self.dataset)

    def draw(self, section: _PlotSection, draw: Callable[[Path], Path | None]) -> Figure | None:
        path = self.plots_dir / f"{self.slug}-{section.name}.png"
        try:
            written = draw(path)
        except Exception as exc:  # a plot must never cost the user the report
            self.notes.append(
                f"{self.dataset}: plot {section.name} not drawn: {type(exc).__name__}: {exc}"
            )
            return None
        if written is None:
            return None
        return Figure(path, f"plots/{path.name}", section.alt.format(dataset=self.dataset))


def _pareto_section(
    rows: Sequence[SummaryRow],
    front: Front,
    figures: _Figures,
    section: _PlotSection,
    plot: Callable[..., Path],
) -> list[Block]:
    # an empty front means no configuration has all these objectives measured: nothing to plot
    figure = (
        figures.draw(section, lambda p: plot(rows, front, p, title=figures.title(section)))
        if front.mask.any()
        else None
    )
    return [Heading(3, section.heading), *_front_blocks(rows, front, figure, section.caption)]


def _run_plot_section(
    rows: Sequence[SummaryRow],
    colors: dict[str, str],
    figures: _Figures,
    section: _PlotSection,
    plot: Callable[..., Path | None],
) -> list[Block]:
    # per-run plots (curves, RSS) draw nothing when the records lack the data: say so instead
    figure = figures.draw(section, lambda p: plot(rows, p, colors, title=figures.title(section)))
    if figure is None:
        return [Heading(3, section.heading), Para([section.missing])]
    figure.caption = section.caption
    return [Heading(3, section.heading), figure]


def _glance(
    by_dataset: Mapping[str, Sequence[SummaryRow]], fronts: Mapping[str, tuple[Front, Front]]
) -> Bullets:
    items: list[list[Inline]] = []
    for dataset, rows in by_dataset.items():
        item: list[Inline] = [Strong(dataset), " — "]
        for k, (what, front) in enumerate(
            (
                ("accuracy vs memory", fronts[dataset][0]),
                ("adding time per epoch", fronts[dataset][1]),
            )
        ):
            names = [rows[i].label for i in range(len(rows)) if front.mask[i]]
            item.append(("; " if k else "") + f"{what}: " + (", ".join(names) or "none measured"))
        items.append([*item, "."])
    return Bullets(items)


def _build(
    records: Sequence[Mapping[str, Any]],
    plots_dir: Path,
    title: str,
    reference: Mapping[str, float] | None,
    notes: Sequence[str],
) -> list[Block]:
    from edgetrain import __version__

    by_dataset = summarize(records)
    colors = plots.model_colors([r.model for rows in by_dataset.values() for r in rows])
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    blocks: list[Block] = [
        Heading(1, title),
        Para(
            [
                f"{len(records)} runs, {len(by_dataset)} dataset(s). Generated {stamp} by "
                f"edgetrain {__version__}."
            ],
            css="meta",
        ),
    ]
    fronts = {
        dataset: (
            pareto_front(rows, OBJECTIVES_MEMORY, reference),
            pareto_front(rows, OBJECTIVES_MEMORY_TIME, reference),
        )
        for dataset, rows in by_dataset.items()
    }
    if records:
        blocks += [
            Heading(2, "At a glance: the Pareto-optimal configurations"),
            _glance(by_dataset, fronts),
        ]
    else:
        blocks.append(Para(["No finished runs to report."]))
    blocks += [Heading(2, "How to read this report"), _how_to_read(reference)]
    all_notes = list(notes)
    for index, (dataset, rows) in enumerate(by_dataset.items(), start=1):
        blocks += _dataset_blocks(
            index, dataset, rows, plots_dir, colors, fronts[dataset], all_notes
        )
    if all_notes:
        blocks.append(Heading(2, "Notes"))
        blocks.append(Bullets([[n] for n in all_notes]))
    return blocks


# --- writers --------------------------------------------------------------------------------------


def _md_text(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "\\|")


def _md_inline(parts: Sequence[Inline]) -> str:
    return "".join(
        f"**{_md_text(p.text)}**" if isinstance(p, Strong) else _md_text(p) for p in parts
    )


def to_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as GitHub-flavoured Markdown (images referenced relative to the report)."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + _md_text(b.text))
        elif isinstance(b, Para):
            out.append(_md_inline(b.parts))
        elif isinstance(b, Bullets):
            out.append("\n".join("- " + _md_inline(item) for item in b.items))
        elif isinstance(b, Table):
            lines = ["| " + " | ".join(_md_text(h) for h in b.headers) + " |"]
            align = [
                "---:" if n else ":---:" if k in b.marks else "---" for k, n in enumerate(b.numeric)
            ]
            lines.append("|" + "|".join(align) + "|")
            lines += ["| " + " | ".join(_md_text(c) for c in row) + " |" for row in b.rows]
            out.append("\n".join(lines))
        elif isinstance(b, Figure):
            alt = _md_text(b.alt).replace("[", "(").replace("]", ")")
            text = f"![{alt}]({b.rel})"
            if b.caption:
                text += "\n\n" + _md_inline(b.caption)
            out.append(text)
    return "\n\n".join(out) + "\n"


_CSS = """
:root { --fg: #1f2937; --muted: #6b7280; --line: #e5e7eb; --head: #f3f4f6; --front: #fff4e6;
        --accent: #d9480f; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); margin: 0 auto; padding: 24px 24px 64px; max-width: 1240px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 17px; margin: 26px 0 6px; }
p { margin: 6px 0; }
p.meta { color: var(--muted); font-size: 13px; }
p.warn { color: #9a4a00; }
ul { margin: 6px 0; padding-left: 22px; }
li { margin: 3px 0; }
nav { font-size: 14px; margin: 8px 0 0; }
nav a { color: var(--accent); margin-right: 14px; text-decoration: none; }
.scroll { overflow-x: auto; margin: 10px 0; }
table { border-collapse: collapse; font-size: 12.5px; }
th, td { padding: 5px 6px; border-bottom: 1px solid var(--line); }
td { max-width: 180px; min-width: 60px; overflow-wrap: break-word; }
th.mark, td.mark { text-align: center; min-width: 0; }
td.mark { color: var(--accent); font-weight: 700; }
td.num, td:first-child { white-space: nowrap; max-width: none; }
th { background: var(--head); text-align: left; font-weight: 600; vertical-align: bottom;
     white-space: normal; min-width: 56px; }
th[title] { cursor: help; text-decoration: underline dotted var(--muted); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) td { background: #fafafa; }
tbody tr.front td { background: var(--front); }
tbody tr.front td:first-child { box-shadow: inset 3px 0 0 var(--accent); font-weight: 600; }
td .sd { display: block; font-size: 11px; color: var(--muted); line-height: 1.2; }
figure { margin: 12px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: #4b5563; font-size: 13.5px; margin-top: 4px; max-width: 900px; }
"""


def _html_inline(parts: Sequence[Inline]) -> str:
    return "".join(
        f"<strong>{html.escape(p.text)}</strong>" if isinstance(p, Strong) else html.escape(p)
        for p in parts
    )


def _html_number(cell: str) -> str:
    # "87.5 ± 0.4": the sd goes on a second, smaller line so wide tables stay narrow
    value, sep, sd = cell.partition(" ± ")
    if not sep:
        return html.escape(cell)
    return f'{html.escape(value)}<span class="sd">± {html.escape(sd)}</span>'


def to_html(blocks: Sequence[Block], *, title: str) -> str:
    """The blocks as one self-contained HTML page: inline CSS, plots as base64 PNG data URIs."""
    body: list[str] = []
    toc = [
        (b.anchor, b.text) for b in blocks if isinstance(b, Heading) and b.anchor and b.level == 2
    ]
    for b in blocks:
        if isinstance(b, Heading):
            anchor = f' id="{b.anchor}"' if b.anchor else ""
            body.append(f"<h{b.level}{anchor}>{html.escape(b.text)}</h{b.level}>")
            if b.level == 1 and len(toc) > 1:
                links = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in toc)
                body.append(f"<nav>{links}</nav>")
        elif isinstance(b, Para):
            css = f' class="{b.css}"' if b.css else ""
            body.append(f"<p{css}>{_html_inline(b.parts)}</p>")
        elif isinstance(b, Bullets):
            items = "".join(f"<li>{_html_inline(item)}</li>" for item in b.items)
            body.append(f"<ul>{items}</ul>")
        elif isinstance(b, Table):
            head = []
            for k, h in enumerate(b.headers):
                cls = ' class="num"' if b.numeric[k] else ' class="mark"' if k in b.marks else ""
                tip = (
                    f' title="{html.escape(b.header_help[k])}"'
                    if k < len(b.header_help) and b.header_help[k]
                    else ""
                )
                head.append(f"<th{cls}{tip}>{html.escape(h)}</th>")
            rows = []
            for r, row in enumerate(b.rows):
                css = b.row_css[r] if r < len(b.row_css) and b.row_css[r] else ""
                cells = "".join(
                    f'<td class="num">{_html_number(c)}</td>'
                    if b.numeric[k]
                    else f'<td class="mark">{html.escape(c)}</td>'
                    if k in b.marks
                    else f"<td>{html.escape(c)}</td>"
                    for k, c in enumerate(row)
                )
                rows.append((f'<tr class="{css}">' if css else "<tr>") + f"{cells}</tr>")
            body.append(
                f'<div class="scroll"><table><thead><tr>{"".join(head)}</tr></thead>'
                f"<tbody>{''.join(rows)}</tbody></table></div>"
            )
        elif isinstance(b, Figure):
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            caption = f"<figcaption>{_html_inline(b.caption)}</figcaption>" if b.caption else ""
            body.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.alt)}">'
                f"{caption}</figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_report(
    records: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    title: str,
    reference: Mapping[str, float] | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Path]:
    """Write report.md, report.html (self-contained) and plots/*.png for these run records.

    Records are grouped per dataset and configuration (model, init), averaged over seeds, and
    analysed for the Pareto fronts over (accuracy, peak RSS above baseline) and (accuracy, memory,
    training time per epoch) with their hypervolumes. `reference` fixes reference values per
    objective key ("test_accuracy", "peak_above_baseline_mb", "epoch_s") for every dataset; keys
    left out use the default rule (accuracy 0, 1.1 x the worst observed). `notes` (e.g. loader
    warnings) are listed at the end. Plots of an earlier report in the same folder are replaced.
    Returns the files written: {"md": path, "html": path, "plots/NAME.png": path, ...}.
    """
    out = Path(out_dir)
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    for old in plots_dir.glob("*.png"):  # our own plots from an earlier report, nothing else
        if _PLOT_NAME.fullmatch(old.name):
            old.unlink()
    blocks = _build(list(records), plots_dir, title, reference, notes)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(to_markdown(blocks), encoding="utf-8")
    html_path.write_text(to_html(blocks, title=title), encoding="utf-8")
    written = {"md": md_path, "html": html_path}
    for b in blocks:
        if isinstance(b, Figure):
            written[b.rel] = b.path
    return written
