"""The model card: `README.md` beside every exported ONNX file, generated from the run's record,
its config and the export's summary, never hand-filled.

It follows the convention of model hubs: YAML front matter (model name, classes, data set,
metrics as a list of {name, value, split}), then sections a person reads before putting the
model on a line: what it is, how well it does (with the spread over seeds and folds when the
caller knows sibling runs), what it costs to train and to run, how to feed it, where it came
from, and what it was not tested on.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from edgetrain.deploy.sidecar import Sidecar
from edgetrain.errors import EdgeTrainError
from edgetrain.fileio import atomic_write_text

CARD_NAME = "README.md"


def card_path(onnx_path: Path) -> Path:
    return onnx_path.with_name(CARD_NAME)


def front_matter(record: dict[str, Any], sidecar: Sidecar, summary: dict[str, Any]) -> dict:
    """The card's YAML header as plain data (what a hub or a script reads)."""
    metrics = [
        {"name": name, "value": round(float(record[key]), 4), "split": "test"}
        for name, key in (("accuracy", "test_accuracy"), ("macro_f1", "test_macro_f1"))
        if isinstance(record.get(key), int | float)
    ]
    for name, key in (("onnx_accuracy", "onnx_test_accuracy"),
                      ("onnx_int8_accuracy", "onnx_int8_test_accuracy")):  # fmt: skip
        if isinstance(summary.get(key), int | float):
            metrics.append({"name": name, "value": round(float(summary[key]), 4), "split": "test"})
    return {
        "model_name": sidecar.model or record.get("model", ""),
        "spec_id": sidecar.spec_id,
        "library_name": "edgetrain",
        "pipeline_tag": "image-classification",
        "classes": list(sidecar.classes),
        "dataset": sidecar.data,
        "resolution_px": sidecar.resolution,
        "precision": sidecar.precision,
        "metrics": metrics,
    }


def render_card(
    record: dict[str, Any],
    sidecar: Sidecar,
    summary: dict[str, Any],
    *,
    spread: Sequence[float] = (),
    provenance: str = "",
) -> str:
    """The card's text. `spread`: test accuracies of the sibling runs (other seeds and folds of
    the same model and protocol), when the caller knows them; `provenance`: how the
    architecture was found (e.g. a search's verdict), else the zoo's description is used."""
    header = yaml.safe_dump(front_matter(record, sidecar, summary), sort_keys=False)
    sections = [
        f"---\n{header}---\n",
        f"# {sidecar.model or record.get('model', 'model')}\n",
        _overview(record, sidecar, provenance),
        _results(record, summary, spread),
        _costs(record, summary),
        _input(sidecar),
        _limits(record, sidecar),
    ]
    return "\n".join(s for s in sections if s)


def write_card(path: Path, text: str) -> Path:
    atomic_write_text(path, text)
    return path


def read_front_matter(text: str) -> dict[str, Any]:
    """The YAML header of a card (the inverse of `front_matter`, for tests and tools)."""
    if not text.startswith("---\n"):
        raise ValueError("no front matter")
    head, sep, _ = text[4:].partition("\n---\n")
    if not sep:
        raise ValueError("front matter not closed")
    data = yaml.safe_load(head)
    if not isinstance(data, dict):
        raise ValueError("front matter is not a mapping")
    return data


def _overview(record: dict[str, Any], sidecar: Sidecar, provenance: str) -> str:
    cfg = record.get("config", {})
    lines = [
        f"An image classifier of {len(sidecar.classes)} classes "
        f"({', '.join(sidecar.classes)}), trained with edgetrain on `{sidecar.data}`.",
        "",
        f"- architecture: `{sidecar.model}` (spec `{sidecar.spec_id}`), "
        f"{_int(record.get('params_total'))} parameters, {_int(record.get('macs'))} MACs per image",
        f"- how it was made: {provenance or _zoo_text(sidecar.model)}",
        f"- training: {_n(cfg.get('epochs'), 'epoch')}, batch {cfg.get('batch_size')}, "
        f"{cfg.get('optimizer', 'adam')} lr {cfg.get('lr')} ({cfg.get('lr_schedule', 'constant')}"
        f" schedule), precision {record.get('precision', cfg.get('precision'))}, seed "
        f"{cfg.get('seed')}"
        + (f", fold {cfg['fold']} of {cfg['folds']}" if cfg.get("folds") else ""),
        f"- source run: `{sidecar.source_run}` (run id {sidecar.run_id})",
    ]
    return "## Model\n\n" + "\n".join(lines) + "\n"


def _results(record: dict[str, Any], summary: dict[str, Any], spread: Sequence[float]) -> str:
    counts = record.get("split_counts") or {}
    acc = record.get("test_accuracy")
    val = (f"validation: {_pct(record.get('val_accuracy'))} on {counts['val']}"
           if counts.get("val") else "no validation split")  # fmt: skip
    lines = [f"Test accuracy of this run: {_pct(acc)} on {counts.get('test', '?')} images ({val})."]
    if len(spread) >= 2:
        lines.append(
            f"Over {len(spread)} runs of the same protocol (seeds and folds): "
            f"{_pct(statistics.fmean(spread))} ± {_pct(statistics.stdev(spread))} (mean ± sd)."
        )
    else:
        lines.append(
            "Spread over seeds and folds: not measured for this export (one run); a bench "
            "with several seeds or `--folds` gives it."
        )
    for label, key in (("onnxruntime fp32", "onnx_test_accuracy"),
                       ("onnxruntime int8", "onnx_int8_test_accuracy")):  # fmt: skip
        if key in summary:
            lines.append(f"{label}: {_pct(summary[key])} on the same test split.")
    if summary.get("int8_refused"):
        lines.append(f"int8: not delivered — {summary['int8_refused']}")
    per_class = record.get("test_per_class_accuracy") or []
    table = ["| class | test accuracy |", "|---|---|"] + [
        f"| {c} | {_pct(a)} |" for c, a in zip(record.get("classes") or [], per_class, strict=False)
    ]
    return "## Results\n\n" + "\n\n".join(lines) + "\n\n" + "\n".join(table) + "\n"


def _costs(record: dict[str, Any], summary: dict[str, Any]) -> str:
    budget = record.get("config", {}).get("memory_budget_mb")
    rows = [
        ("training peak above baseline (RSS)", _mb(record.get("peak_above_baseline_mb"))),
        ("training peak, whole process (RSS)", _mb(record.get("peak_rss_mb"))),
        ("memory budget", _mb(budget) if budget else "none given"),
        ("training step", _ms(record.get("train_step_ms"))),
        ("epoch", _s(record.get("epoch_s"))),
        ("PyTorch latency, batch 1 / 16", _pair(record, "infer_latency_ms_b1", "infer_latency_ms_b16")),
        ("onnxruntime fp32 latency, batch 1 / 16", _pair(summary, "onnx_latency_ms_b1", "onnx_latency_ms_b16")),
        ("onnxruntime int8 latency, batch 1 / 16", _pair(summary, "onnx_int8_latency_ms_b1", "onnx_int8_latency_ms_b16")),
    ]  # fmt: skip
    where = (record.get("environment") or {}).get("cpu_model") or record.get("device_name") or "?"
    table = ["| what | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return (
        f"## Costs\n\nMeasured on {where} ({record.get('accelerator', 'cpu')}); peaks are the "
        "process's resident memory, so they include the runtime.\n\n" + "\n".join(table) + "\n"
    )


def _input(sidecar: Sidecar) -> str:
    return (
        "## Input\n\n"
        f"float32 `{sidecar.input_name}` of shape (N, 3, {sidecar.resolution}, "
        f"{sidecar.resolution}), RGB, each pixel value v in 0..255 fed as v * {sidecar.scale:.6g} "
        f"+ {sidecar.offset:.6g}; output `{sidecar.output_name}` (N, {len(sidecar.classes)}) "
        "logits in the class order above. `edgetrain predict` does all of this from the "
        "sidecar JSON beside the model.\n"
    )


def _limits(record: dict[str, Any], sidecar: Sidecar) -> str:
    counts = record.get("split_counts") or {}
    return (
        "## Intended use and limitations\n\n"
        f"Trained on {counts.get('train', '?')} images of `{sidecar.data}` at "
        f"{sidecar.resolution} px. Use it on images like those: the same kind of crop, camera, "
        "lighting and boards. Accuracy on anything else (new board designs, other defect "
        "types, whole-board photographs) has not been measured; evaluate on your own labelled "
        "images first (`edgetrain evaluate MODEL --data REF`). Classes outside the list above "
        "are always given one of its names.\n"
    )


def _zoo_text(model: str) -> str:
    try:
        from edgetrain.models.registry import get_model_factory

        doc = (get_model_factory(model).__doc__ or "").strip().splitlines()
        return f"a model of the zoo: {doc[0]}" if doc else "a model of the zoo"
    except EdgeTrainError:  # a found spec or an unknown name: the spec id above identifies it
        return "an architecture spec (see the spec id)"


def _n(count: Any, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _pct(x: Any) -> str:
    return f"{100 * x:.1f} %" if isinstance(x, int | float) else "not measured"


def _mb(x: Any) -> str:
    return f"{x:.0f} MB" if isinstance(x, int | float) else "not measured"


def _ms(x: Any) -> str:
    return f"{x:.0f} ms" if isinstance(x, int | float) else "not measured"


def _s(x: Any) -> str:
    return f"{x:.1f} s" if isinstance(x, int | float) else "not measured"


def _int(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) else "?"


def _pair(d: dict[str, Any], a: str, b: str) -> str:
    if not isinstance(d.get(a), int | float):
        return "not measured"
    return f"{d[a]:.1f} / {d[b]:.1f} ms" if isinstance(d.get(b), int | float) else _ms(d[a])
