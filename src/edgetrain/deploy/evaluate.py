"""Evaluate a run directory or an exported .onnx on a data set: accuracy, macro-F1, per-class
accuracy, a confusion matrix (PNG), a contact sheet of misclassified images, JSON.

The images are the split's decode-once cache (`edgetrain.data.load_split`), made by the same
`edgetrain.preprocess.decode` that `edgetrain predict` uses, and normalised as the model says
(`Predictor.normalize`), so evaluation and prediction see identical inputs. Files the data set
left out (empty, corrupt, not images) are counted and named in the output and metrics.json, so
a score on half a folder does not read as a score on all of it. Classes are matched by name: a
data set may hold a subset of the model's classes, not a class the model does not know.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edgetrain.deploy.predict import Predictor, checked_logits, load_predictor
from edgetrain.errors import EdgeTrainError
from edgetrain.fileio import atomic_write_text

SPLITS = ("test", "val", "train", "all")
SHEET_MAX = 48  # misclassified images shown
SKIPPED_SHOWN = 20  # skipped files listed in the text output (metrics.json lists all)


def logits_of(model: Predictor, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Logits (N, C) of uint8 images (N, 3, R, R), normalised as the model says, in batches."""
    out = [
        checked_logits(model, images[i : i + batch_size]) for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, len(model.classes)), np.float32)


class Images(NamedTuple):
    """A data set's split as evaluated: uint8 images (N, 3, R, R), labels (N,), the data's class
    names, each image's source, and the files left out ({file, reason, stage, split})."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    sources: list[str]
    skipped: list[dict[str, str | None]]


def load_images(
    ref: str, split: str, resolution: int, *, split_seed: int = 0, folds: int = 0, fold: int = 0
) -> Images:
    """The images of one split or `all` of them (decoded once, cached). `split_seed`, `folds`
    and `fold` pick the split a run trained on (a cross-validated run's fold)."""
    from edgetrain.data import load_split, resolve  # torch: the decode-once cache

    if split not in SPLITS:
        raise EdgeTrainError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    splits = resolve(ref, seed=split_seed, folds=folds, fold=fold)
    names = ("train", "val", "test") if split == "all" else (split,)
    images, labels, sources = [], [], []
    for s in names:
        x, y = load_split(splits, s, resolution=resolution)
        images.append(x.numpy())
        labels.append(y.numpy())
        sources += [r.source for r in splits.kept(s)]
    x, y = np.concatenate(images), np.concatenate(labels)
    if len(y) == 0:
        raise EdgeTrainError(f"the {split} split of {ref} holds no images; try --split all")
    return Images(x, y, list(splits.classes), sources, splits.skipped_report())


def remap_labels(
    labels: np.ndarray, data_classes: list[str], model_classes: list[str]
) -> np.ndarray:
    """Data label indices -> the model's indices of the same class names."""
    unknown = [c for c in data_classes if c not in model_classes]
    if unknown:
        raise EdgeTrainError(
            f"class mismatch: the data has classes the model does not know: {unknown[:5]} (the "
            f"model's {len(model_classes)} classes: {model_classes[:8]})"
        )
    table = np.array([model_classes.index(c) for c in data_classes], dtype=np.int64)
    return table[labels]


def metrics_of(targets: np.ndarray, preds: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 (over classes present), per-class accuracy and the confusion matrix."""
    c = len(classes)
    cm = np.bincount(targets * c + preds, minlength=c * c).reshape(c, c)
    support, predicted, tp = cm.sum(1), cm.sum(0), np.diag(cm)
    present = (support + predicted) > 0
    f1 = 2 * tp / np.maximum(support + predicted, 1)
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class_accuracy": {
            name: (float(tp[i] / support[i]) if support[i] else None)
            for i, name in enumerate(classes)
        },
        "confusion": cm.tolist(),  # rows: true class, columns: predicted
        "images": int(cm.sum()),
    }


def evaluate(
    model_path: str | Path,
    *,
    data: str | None,
    split: str = "test",
    out_dir: str | Path | None = None,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Evaluate `model_path` on `split` of `data` (default: the data the model was trained on)
    and write metrics.json, confusion.png and misclassified.png into `out_dir`."""
    model = load_predictor(model_path, batch_size=batch_size)
    ref, which = _data_of(model, data)
    x, y, data_classes, sources, skipped = load_images(ref, split, model.resolution, **which)
    targets = remap_labels(y, data_classes, model.classes)
    preds = logits_of(model, x, batch_size).argmax(1)
    result = {"model": str(model_path), "data": ref, "split": split}
    result.update(metrics_of(targets, preds, model.classes))
    result["skipped_files"] = len(skipped)
    result["skipped"] = skipped
    wrong = np.flatnonzero(preds != targets)
    result["misclassified"] = [
        {
            "file": sources[i],
            "true": model.classes[targets[i]],
            "predicted": model.classes[preds[i]],
        }
        for i in wrong
    ]
    out = Path(out_dir) if out_dir else _default_out(Path(model_path), split)
    out.mkdir(parents=True, exist_ok=True)
    from edgetrain.deploy.figures import confusion_png, misclassified_sheet

    result["confusion_png"] = str(confusion_png(result["confusion"], model.classes, out))
    shown = _spread(wrong, targets)[:SHEET_MAX]
    sheet = [(x[i], model.classes[targets[i]], model.classes[preds[i]]) for i in shown]
    result["misclassified_png"] = str(misclassified_sheet(sheet, out)) if sheet else None
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=2) + "\n")
    result["metrics_json"] = str(out / "metrics.json")
    return result


def _spread(indices: np.ndarray, targets: np.ndarray) -> list[int]:
    """`indices` reordered round-robin over their true classes, so a sheet shows every class."""
    seen: dict[int, int] = {}
    ranked = []
    for i in indices.tolist():
        c = int(targets[i])
        seen[c] = seen.get(c, 0) + 1
        ranked.append((seen[c], c, i))
    return [i for *_, i in sorted(ranked)]


def _data_of(model: Predictor, data: str | None) -> tuple[str, dict[str, int]]:
    """The data reference to evaluate on and which split of it: the model's own split seed and
    fold when it is the data the model was trained on, else the data's default split."""
    config = getattr(model, "config", None)  # a run directory's model
    sidecar = getattr(model, "sidecar", None)  # an exported model
    own = config or sidecar
    own_ref = own.data if own else ""
    ref = data or own_ref
    if not ref:
        raise EdgeTrainError("no data set: give --data REF")
    if ref != own_ref or own is None:
        return ref, {}
    return ref, split_args(own)


def split_args(source: Any) -> dict[str, int]:
    """{split_seed, folds, fold} of a run config or a sidecar: the split it trained on."""
    return {k: int(getattr(source, k, 0) or 0) for k in ("split_seed", "folds", "fold")}


def _default_out(model_path: Path, split: str) -> Path:
    if model_path.is_dir():
        return model_path / f"evaluate-{split}"
    return model_path.with_name(f"{model_path.stem}.evaluate-{split}")


def format_lines(result: dict[str, Any]) -> list[str]:
    skipped = result["skipped"]
    left_out = f", {len(skipped)} files skipped" if skipped else ""
    lines = [
        f"{result['model']} on {result['data']} ({result['split']}, {result['images']} images"
        f"{left_out})",
        f"accuracy {result['accuracy']:.2%}   macro-F1 {result['macro_f1']:.3f}   "
        f"misclassified {len(result['misclassified'])}",
    ]
    for name, acc in result["per_class_accuracy"].items():
        lines.append(f"  {name:<24} {'–' if acc is None else f'{acc:.1%}'}")
    lines += [f"skipped: {s['file']}: {s['reason']}" for s in skipped[:SKIPPED_SHOWN]]
    if len(skipped) > SKIPPED_SHOWN:
        lines.append(f"  ... and {len(skipped) - SKIPPED_SHOWN} more (metrics.json lists all)")
    lines.append(f"wrote {result['metrics_json']}, {result['confusion_png']}")
    if result["misclassified_png"]:
        lines[-1] += f", {result['misclassified_png']}"
    return lines
