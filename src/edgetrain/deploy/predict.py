"""Predict the classes of image files with a run directory (PyTorch) or an exported .onnx.

Images go through `edgetrain.preprocess.load_image` and `normalize`, the preprocessing training
used, so a file is classified from exactly the pixels evaluation sees. Files that cannot be read
are listed with a reason and counted, never a crash. With an .onnx model this module needs numpy,
Pillow and onnxruntime only: torch is imported only for a run directory.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgetrain.errors import EdgeTrainError
from edgetrain.preprocess import BadImage, bomb_guard, is_image_name, load_image, to_batch

MAX_IMAGE_FILE_MB = 256  # larger files are refused unread (a photo is a few MB)


class Predictor(Protocol):
    """What predict and evaluate need of a model: its classes, input side, and logits."""

    @property
    def classes(self) -> list[str]: ...
    @property
    def resolution(self) -> int: ...
    def logits(self, x: np.ndarray) -> np.ndarray: ...  # (N, 3, R, R) float32 -> (N, C)


@dataclass
class Prediction:
    file: str
    top: list[tuple[str, float]]  # (class, probability), most probable first


@dataclass
class PredictResult:
    predictions: list[Prediction] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "predictions": [
                {"file": p.file, "top": [{"class": c, "probability": q} for c, q in p.top]}
                for p in self.predictions
            ],
            "failed": [{"file": f, "reason": r} for f, r in self.failed],
            "counts": {"predicted": len(self.predictions), "failed": len(self.failed)},
        }


def load_predictor(path: str | Path, *, threads: int | None = None) -> Predictor:
    """An exported `.onnx` (onnxruntime, no torch) or a run directory (PyTorch)."""
    p = Path(path)
    if p.is_dir():
        import torch  # only for run directories

        from edgetrain.deploy.runmodel import load_run_model

        if threads:
            torch.set_num_threads(threads)
        return load_run_model(p)
    if p.suffix.lower() == ".onnx":
        from edgetrain.deploy.runtime import load_onnx

        return load_onnx(p, threads=threads)
    if not p.exists():
        raise EdgeTrainError(f"no model at {p}: give a run directory or an exported .onnx file")
    raise EdgeTrainError(f"{p} is neither a run directory nor an .onnx file")


def collect_images(inputs: Sequence[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to predict: each file given, and the image files under each folder (recursive,
    sorted, hidden entries left out); (path, reason) for what cannot be used."""
    files: list[Path] = []
    failed: list[tuple[str, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for dirpath, dirnames, names in os.walk(p, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(names):
                    f = Path(dirpath) / name
                    if name.startswith("."):
                        continue
                    if is_image_name(f):
                        files.append(f)
                    else:
                        failed.append((str(f), f"not an image file ({f.suffix or 'no extension'})"))
        elif p.is_file():
            files.append(p)
        else:
            failed.append((str(p), "no such file or folder"))
    return files, failed


def _decode(path: Path, resolution: int) -> np.ndarray:
    size_mb = path.stat().st_size / 2**20
    if size_mb > MAX_IMAGE_FILE_MB:
        raise BadImage(f"file of {size_mb:.0f} MB, above the {MAX_IMAGE_FILE_MB} MB limit")
    return load_image(path, resolution=resolution)


def iter_batches(
    files: Sequence[Path], resolution: int, batch_size: int, failed: list[tuple[str, str]]
) -> Iterator[tuple[list[Path], np.ndarray]]:
    """(files, float32 batch (B, 3, R, R)) of up to `batch_size` readable files, in order;
    unreadable ones are appended to `failed` with their reason."""
    for start in range(0, len(files), batch_size):
        ok, arrays = [], []
        with bomb_guard():
            for f in files[start : start + batch_size]:
                try:
                    arrays.append(_decode(f, resolution))
                    ok.append(f)
                except (BadImage, OSError) as exc:
                    failed.append((str(f), str(exc)))
        if arrays:
            yield ok, to_batch(arrays)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict_files(
    model: Predictor, inputs: Sequence[str | Path], *, top_k: int = 1, batch_size: int = 16
) -> PredictResult:
    """Top-k classes with probabilities for every readable image among `inputs`."""
    if top_k < 1 or batch_size < 1:
        raise EdgeTrainError("--top-k and --batch-size must be at least 1")
    files, failed = collect_images(inputs)
    result = PredictResult(failed=failed)
    k = min(top_k, len(model.classes))
    for batch_files, x in iter_batches(files, model.resolution, batch_size, result.failed):
        probs = softmax(model.logits(x).astype(np.float64))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        for f, idx, p in zip(batch_files, order, probs, strict=True):
            top = [(model.classes[i], float(p[i])) for i in idx]
            result.predictions.append(Prediction(str(f), top))
    return result


def write_csv(result: PredictResult, path: str | Path) -> None:
    """One row per file: file, then class_1, prob_1, ... class_k, prob_k; failed files with
    their reason in an `error` column."""
    k = max((len(p.top) for p in result.predictions), default=1)
    header = ["file", *[f"{n}_{i}" for i in range(1, k + 1) for n in ("class", "prob")], "error"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for p in result.predictions:
            cells = [x for c, q in p.top for x in (c, f"{q:.6f}")]
            w.writerow([p.file, *cells, *[""] * (2 * k - len(cells)), ""])
        for file, reason in result.failed:
            w.writerow([file, *[""] * (2 * k), reason])


def format_lines(result: PredictResult) -> list[str]:
    """Human-readable lines: one per prediction, then the failed files and the counts."""
    lines = [
        f"{p.file}\t" + "  ".join(f"{c} {q:.1%}" for c, q in p.top) for p in result.predictions
    ]
    lines += [f"unreadable: {f}: {r}" for f, r in result.failed]
    lines.append(f"{len(result.predictions)} predicted, {len(result.failed)} unreadable")
    return lines
