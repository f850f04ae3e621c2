"""Summary rows of the report: run records grouped by (dataset, model, init), mean ± sd over seeds.

A run record is the dict a training run writes to `record.json` (see `edgetrain.train.record`).
Grouping, statistics and cell formatting live here so that the Markdown and the HTML report show
the same strings; the Pareto analysis of the rows (one point per configuration, at its means) is
`pareto_front`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Literal

import numpy as np

from edgetrain.objectives import OBJECTIVES
from edgetrain.report.pareto import Direction, default_reference, hypervolume, non_dominated
from edgetrain.report.stats import did_not_learn

# Record keys averaged over the runs of a group (units in the names, as in the record).
METRICS = (
    "test_accuracy",
    "test_accuracy_as_trained",
    "test_macro_f1",
    "mean_rss_mb",
    "peak_rss_mb",
    "baseline_rss_mb",
    "peak_above_baseline_mb",
    "analytic_mb",
    "system_ram_permille",
    "epoch_s",
    "total_train_s",
    "train_step_ms",
    "train_images_per_s",
    "infer_latency_ms_b1",
    "infer_latency_ms_b16",
    "onnx_latency_ms_b1",
    "onnx_latency_ms_b16",
    "params_trainable",
    "macs",
)

# The two Pareto analyses of the report: (record key, direction) per objective.
OBJECTIVES_MEMORY: tuple[tuple[str, Direction], ...] = tuple(
    (OBJECTIVES[n].report_field, OBJECTIVES[n].direction) for n in ("accuracy", "memory")
)
OBJECTIVES_MEMORY_TIME: tuple[tuple[str, Direction], ...] = (
    *OBJECTIVES_MEMORY,
    (OBJECTIVES["time"].report_field, OBJECTIVES["time"].direction),
)
# The ideal value of each objective, for the hypervolume's share of the ideal-to-reference box.
IDEAL = {"test_macro_f1": 1.0, **{o.report_field: o.ideal for o in OBJECTIVES.values()}}


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (n - 1) of the finite values of one metric in a group."""

    mean: float  # NaN when no run has a value
    sd: float | None  # None when fewer than two values
    n: int  # how many runs had a finite value

    @classmethod
    def of(cls, values: Iterable[Any]) -> Stat:
        xs = [float(v) for v in values if _is_number(v) and math.isfinite(float(v))]
        if not xs:
            return cls(math.nan, None, 0)
        mean = math.fsum(xs) / len(xs)
        sd = float(np.std(xs, ddof=1)) if len(xs) > 1 else None
        return cls(mean, sd, len(xs))


@dataclass(frozen=True)
class SummaryRow:
    """One configuration of one dataset: its runs (seeds) and the statistics of their metrics."""

    dataset: str
    model: str
    init: str  # "scratch" or a short label of the starting weights (see `init_label`)
    seeds: tuple[Any, ...]
    run_dirs: tuple[str, ...]
    stats: dict[str, Stat]
    records: tuple[Mapping[str, Any], ...] = field(repr=False, default=())
    # why this configuration did not learn (half or more of its runs near chance), else None:
    # such a row is flagged and never drawn as Pareto-optimal
    not_learned: str | None = None

    @property
    def n_runs(self) -> int:
        return len(self.records) or len(self.seeds)

    @property
    def label(self) -> str:
        """The name shown next to the point in plots: the model, plus the init unless scratch."""
        return self.model if self.init == "scratch" else f"{self.model} ({self.init})"

    def mean(self, key: str) -> float:
        stat = self.stats.get(key)
        return stat.mean if stat is not None else math.nan


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def dataset_label(record: Mapping[str, Any]) -> str:
    """The dataset a record belongs to in the report: a short label if it has one, else its ref.

    In order: the record's "dataset", the config's `extra["dataset"]` (set by `edgetrain bench`
    experiments), the record's "data" reference string, the config's "data".
    """
    config = _config(record)
    extra = config.get("extra") if isinstance(config.get("extra"), Mapping) else {}
    candidates = (
        record.get("dataset"),
        extra.get("dataset"),
        record.get("data"),
        config.get("data"),
    )
    for value in candidates:
        if value:
            return str(value)
    return "unknown dataset"


def model_name(record: Mapping[str, Any]) -> str:
    return str(record.get("model") or _config(record).get("model") or "unknown model")


def init_label(record: Mapping[str, Any]) -> str:
    """How a run's weights started: "scratch", or a short name of the `init` run/checkpoint.

    A free-form `config["extra"]["init_label"]` wins (a bench runner can name a transfer source,
    e.g. "caltech101"); else the last path component of `config["init"]` (its folder when it names
    a `*.pt` file). A train scope other than "all" and a precision other than fp32 are
    appended, e.g. "caltech-run, head" or "scratch, bf16", and so is a GPU (`accelerator`
    of the record, e.g. "scratch, cuda:0"): such runs are never averaged together.
    """
    config = _config(record)
    extra = config.get("extra") if isinstance(config.get("extra"), Mapping) else {}
    init = config.get("init")
    label = extra.get("init_label") if extra else None
    if not label:
        if not init:
            label = "scratch"
        else:
            path = PurePath(str(init))
            label = path.parent.name if path.suffix == ".pt" and path.parent.name else path.name
            label = label or str(init)
    scope = config.get("train_scope")
    if scope and scope != "all":
        label = f"{label}, {scope}"
    precision = config.get("precision")
    if precision and precision != "fp32":
        label = f"{label}, {precision}"
    device = record.get("accelerator")
    if device and device != "cpu":  # GPU figures are never averaged with CPU ones
        label = f"{label}, {device}"
    return str(label)


def _config(record: Mapping[str, Any]) -> Mapping[str, Any]:
    config = record.get("config")
    return config if isinstance(config, Mapping) else {}


def protocol_label(record: Mapping[str, Any]) -> str:
    """What a run's numbers depend on besides model and data: resolution, epochs, the recipe
    where it is not the paper's, and the folds, e.g. "64 px, 6 epochs, cosine, EMA 0.998"."""
    c = _config(record)
    parts = [f"{c.get('resolution', '?')} px", f"{c.get('epochs', '?')} epochs"]
    if c.get("lr_schedule") not in (None, "constant") or c.get("warmup_epochs"):
        warm = (
            f" + {c['warmup_epochs']:g} warm-up"
            if _is_number(c.get("warmup_epochs")) and c.get("warmup_epochs")
            else ""
        )
        parts.append(f"{c.get('lr_schedule', 'constant')}{warm}")
    if c.get("ema_decay"):
        parts.append(f"EMA {c['ema_decay']}")
    if c.get("label_smoothing"):
        parts.append(f"label smoothing {c['label_smoothing']}")
    if c.get("lr") not in (None, 1e-3):
        parts.append(f"lr {c['lr']:g}" if _is_number(c.get("lr")) else "lr ?")
    if c.get("folds"):
        parts.append(f"{c['folds']} folds")
    return ", ".join(parts)


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, list[SummaryRow]]:
    """Group run records by (dataset, protocol, model, init) and average their metrics over
    the runs (seeds and folds).

    Returns {dataset label: rows}, datasets and rows sorted by name so that the report does not
    depend on the order in which runs finished. Runs of different protocols (`protocol_label`)
    never share a group or a dataset section: where one dataset holds several, each gets its
    own section, labelled "dataset [protocol]". Each row holds `Stat`s (mean, sample sd over the
    runs, shown only for n > 1) for every key in `METRICS`; missing or non-finite values are left
    out of a statistic rather than failing the report.
    """
    records = list(records)
    protocols: dict[str, set[str]] = {}
    for record in records:
        protocols.setdefault(dataset_label(record), set()).add(protocol_label(record))
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for record in records:
        dataset = dataset_label(record)
        if len(protocols[dataset]) > 1:
            dataset = f"{dataset} [{protocol_label(record)}]"
        key = (dataset, model_name(record), init_label(record))
        groups.setdefault(key, []).append(record)
    out: dict[str, list[SummaryRow]] = {}
    for (dataset, model, init), recs in sorted(groups.items()):
        recs = sorted(recs, key=lambda r: str(_config(r).get("seed", "")))
        row = SummaryRow(
            dataset=dataset,
            model=model,
            init=init,
            seeds=tuple(_config(r).get("seed") for r in recs),
            run_dirs=tuple(str(r.get("run_dir") or "") for r in recs),
            stats={k: Stat.of(r.get(k) for r in recs) for k in METRICS},
            records=tuple(recs),
            not_learned=_not_learned(recs),
        )
        out.setdefault(dataset, []).append(row)
    return out


def _not_learned(records: Sequence[Mapping[str, Any]]) -> str | None:
    reasons = [why for why in map(did_not_learn, records) if why]
    if not reasons or 2 * len(reasons) < len(records):
        return None
    runs = f" ({len(reasons)} of {len(records)} runs)" if len(records) > 1 else ""
    return reasons[0] + runs


# --- formatting -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A column of the summary table: which metric, its header, how its numbers are written."""

    key: str
    header: str
    kind: Literal["percent", "fraction", "number", "count", "millions"]
    help: str


COLUMNS: tuple[Column, ...] = (
    Column("test_accuracy", "test acc (%)", "percent", "top-1 accuracy on the test split"),
    Column(
        "test_accuracy_as_trained",
        "as trained (%)",
        "percent",
        "test accuracy with BatchNorm running averages as training left them (the paper's "
        "evaluation); the column before uses statistics re-estimated from training images",
    ),
    Column("test_macro_f1", "macro-F1", "fraction", "unweighted mean of per-class F1, test split"),
    Column("mean_rss_mb", "mean RSS (MB)", "number", "process RSS averaged over training"),
    Column("peak_rss_mb", "peak RSS (MB)", "number", "largest sampled process RSS in training"),
    Column(
        "peak_above_baseline_mb",
        "peak − baseline (MB)",
        "number",
        "peak RSS minus the RSS with model and data ready, before the first step",
    ),
    Column(
        "system_ram_permille",
        "system RAM (‰)",
        "number",
        "the paper's measure: 1000 × share of the machine's RAM in use, once per epoch",
    ),
    Column("epoch_s", "s / epoch", "number", "training wall time per epoch (mean over epochs)"),
    Column("train_step_ms", "step (ms)", "number", "median time of one training step"),
    Column("infer_latency_ms_b1", "infer b1 (ms)", "number", "median inference latency, batch 1"),
    Column(
        "infer_latency_ms_b16", "infer b16 (ms)", "number", "median inference latency, batch 16"
    ),
    Column(
        "onnx_latency_ms_b1",
        "onnx b1 (ms)",
        "number",
        "exported model in onnxruntime, batch 1 (edgetrain export)",
    ),
    Column("onnx_latency_ms_b16", "onnx b16 (ms)", "number", "onnxruntime, batch 16"),
    Column("params_trainable", "trainable params", "count", "parameters with requires_grad"),
    Column("macs", "MACs (M)", "millions", "forward multiply-accumulates per image, millions"),
)


def _digits(x: float) -> int:
    ax = abs(x)
    return 0 if ax >= 100 else 1 if ax >= 10 else 2 if ax >= 0.1 or ax == 0 else 3


def format_number(x: float | None, digits: int | None = None) -> str:
    """A number for a table cell: thousands separators, fewer decimals the larger it is."""
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:,.{_digits(x) if digits is None else digits}f}"


def format_stat(stat: Stat, kind: str) -> str:
    """ "mean ± sd" in the column's unit; the sd only when more than one run had a value."""
    if stat.n == 0:
        return "–"
    scale = {"percent": 100.0, "millions": 1e-6}.get(kind, 1.0)
    mean = stat.mean * scale
    if kind == "count":
        text = f"{round(mean):,}"
        return text if not stat.sd else f"{text} ± {stat.sd:,.0f}"
    digits = {"percent": 1, "fraction": 3}.get(kind, _digits(mean))
    text = format_number(mean, digits)
    if stat.sd is not None and kind != "millions":
        text += f" ± {format_number(stat.sd * scale, digits)}"
    return text


def row_cells(row: SummaryRow, columns: Sequence[Column] = COLUMNS) -> list[str]:
    return [format_stat(row.stats[c.key], c.kind) for c in columns]


# --- Pareto analysis of the rows ----------------------------------------------------------------


@dataclass(frozen=True)
class Front:
    """The Pareto analysis of one dataset's configurations over some objectives (at their means)."""

    keys: tuple[str, ...]
    directions: tuple[Direction, ...]
    values: np.ndarray  # (n_rows, n_objectives) means; NaN where a configuration lacks a value
    mask: np.ndarray  # (n_rows,) True on the front
    reference: np.ndarray  # (n_objectives,)
    reference_given: tuple[bool, ...]  # per objective: from the caller (True) or the default rule
    hypervolume: float
    hv_share: float  # hypervolume / volume of the box from the reference to the ideal point


def pareto_front(
    rows: Sequence[SummaryRow],
    objectives: Sequence[tuple[str, Direction]],
    reference: Mapping[str, float] | None = None,
) -> Front:
    """Non-dominated configurations among `rows` and their hypervolume, at each row's means.

    `reference` maps objective keys (e.g. "peak_above_baseline_mb") to fixed reference values;
    objectives it leaves out get `default_reference` computed from these rows (accuracy 0, the
    worst memory or time observed x 1.1). A fixed reference makes hypervolumes of different
    studies comparable; the default one only ranks configurations within this report.
    """
    keys = tuple(k for k, _ in objectives)
    directions = tuple(d for _, d in objectives)
    values = np.array([[row.mean(k) for k in keys] for row in rows], dtype=float).reshape(
        len(rows), len(keys)
    )
    learned = np.array([row.not_learned is None for row in rows], dtype=bool)
    mask = np.zeros(len(rows), dtype=bool)
    if learned.any():  # a configuration that did not learn is never Pareto-optimal
        mask[learned] = non_dominated(values[learned], directions)
    given = tuple(reference is not None and k in reference for k in keys)
    ref = default_reference(values, directions)
    for i, k in enumerate(keys):
        if given[i]:
            ref[i] = float(reference[k])  # type: ignore[index]
    if np.isnan(ref).any():
        hv, share = math.nan, math.nan
    else:
        hv = hypervolume(values[learned], directions, ref)
        box = math.prod(abs(ref[i] - IDEAL.get(k, math.nan)) for i, k in enumerate(keys))
        share = hv / box if box and math.isfinite(box) else math.nan
    return Front(keys, directions, values, mask, ref, given, hv, share)
