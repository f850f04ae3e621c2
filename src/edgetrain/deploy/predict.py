"""Predict the classes of image files with a run directory (PyTorch) or an exported .onnx.

Images are decoded by `edgetrain.preprocess.decode`, the decoder training used, and normalised
as the model says (a run: training's normalisation; an .onnx: its sidecar's scale and offset),
so a file is classified from exactly the pixels evaluation sees. Each file is read once, as a
regular file of at most `MAX_IMAGE_FILE_MB`. Files that cannot be used are listed with a reason
and counted, never a crash; a path given that is neither a file nor a folder, or a call that
predicts nothing, is an error (`input_problem`). With an .onnx model this module needs numpy,
Pillow and onnxruntime only: torch is imported only for a run directory.
"""

from __future__ import annotations

import csv
import io
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgetrain.errors import EdgeTrainError
from edgetrain.fileio import read_bounded
from edgetrain.preprocess import BadImage, bomb_guard, decode, is_image_name
from edgetrain.threads import resolve_threads

MAX_IMAGE_FILE_MB = 256  # larger files are refused unread (a photo is a few MB)


class Predictor(Protocol):
    """What predict and evaluate need of a model: its classes, input side, normalisation and
    logits."""

    @property
    def classes(self) -> list[str]: ...
    @property
    def resolution(self) -> int: ...
    def normalize(self, images: np.ndarray) -> np.ndarray: ...  # uint8 -> float32 (N, 3, R, R)
    def logits(self, x: np.ndarray) -> np.ndarray: ...  # (N, 3, R, R) float32 -> (N, C)


@dataclass
class Prediction:
    file: str
    top: list[tuple[str, float]]  # (class, probability), most probable first


@dataclass
class PredictResult:
    predictions: list[Prediction] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    bad_inputs: list[str] = field(default_factory=list)  # paths given, neither file nor folder

    def to_dict(self) -> dict[str, Any]:
        return {
            "predictions": [
                {"file": p.file, "top": [{"class": c, "probability": q} for c, q in p.top]}
                for p in self.predictions
            ],
            "failed": [{"file": f, "reason": r} for f, r in self.failed],
            "counts": {"predicted": len(self.predictions), "failed": len(self.failed)},
        }


def load_predictor(
    path: str | Path, *, threads: int | None = None, batch_size: int = 32
) -> Predictor:
    """An exported `.onnx` (onnxruntime, no torch) or a run directory (PyTorch), with `threads`
    (else EDGETRAIN_THREADS, else the runtime's default; `edgetrain.threads` bounds both), for
    batches of up to `batch_size` images."""
    p = Path(path)
    threads = resolve_threads(threads)
    if p.is_dir():
        import torch  # only for run directories

        from edgetrain.deploy.runmodel import load_run_model

        if threads:
            torch.set_num_threads(threads)
        return load_run_model(p)
    if p.suffix.lower() == ".onnx":
        from edgetrain.deploy.runtime import load_onnx

        return load_onnx(p, threads=threads, batch_size=batch_size)
    if not p.exists():
        raise EdgeTrainError(f"no model at {p}: give a run directory or an exported .onnx file")
    raise EdgeTrainError(f"{p} is neither a run directory nor an .onnx file")


def collect_images(
    inputs: Sequence[str | Path],
) -> tuple[list[Path], list[tuple[str, str]], list[str]]:
    """Files to predict: each file given, and the image files under each folder (recursive,
    sorted, hidden entries left out); (path, reason) for what cannot be used; and the paths
    given that are neither a regular file nor a folder."""
    files: list[Path] = []
    failed: list[tuple[str, str]] = []
    bad_inputs: list[str] = []
    for item in inputs:
        p = Path(item)
        kind = _kind(p)
        if kind == "folder":
            _walk(p, files, failed)
        elif kind == "file":
            files.append(p)
        else:
            failed.append((str(p), kind))
            bad_inputs.append(str(p))
    return files, failed, bad_inputs


def _walk(folder: Path, files: list[Path], failed: list[tuple[str, str]]) -> None:
    for dirpath, dirnames, names in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(names):
            f = Path(dirpath) / name
            if name.startswith("."):
                continue
            kind = _kind(f)
            if kind != "file":
                failed.append((str(f), kind))
            elif is_image_name(f):
                files.append(f)
            else:
                failed.append((str(f), f"not an image file ({f.suffix or 'no extension'})"))


_SPECIAL = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(path: Path) -> str:
    """`file` or `folder` (links followed), else why the path cannot be used: the file's kind
    is read with stat, never by opening it (opening a FIFO waits for a writer)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "no such file or folder"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "file"
    what = next((name for test, name in _SPECIAL if test(mode)), "a special file")
    return f"not a regular file ({what}), so not an image"


def _decode(path: Path, resolution: int) -> np.ndarray:
    """One image file as training decodes it, (R, R, 3) uint8; read once, at most the cap."""
    size_mb = path.stat().st_size / 2**20
    if size_mb > MAX_IMAGE_FILE_MB:
        raise BadImage(f"file of {size_mb:.0f} MB, above the {MAX_IMAGE_FILE_MB} MB limit")
    try:
        data = read_bounded(path, MAX_IMAGE_FILE_MB * 2**20, "image file")
    except EdgeTrainError as exc:  # replaced or grown since it was listed
        raise BadImage(str(exc).removeprefix(f"{path}: ")) from None
    if not data:
        raise BadImage("empty file (0 bytes)")
    return decode(io.BytesIO(data), resolution=resolution)[0]


def iter_batches(
    files: Sequence[Path], resolution: int, batch_size: int, failed: list[tuple[str, str]]
) -> Iterator[tuple[list[Path], np.ndarray]]:
    """(files, uint8 batch (B, 3, R, R)) of up to `batch_size` readable files, in order;
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
            yield ok, np.stack(arrays).transpose(0, 3, 1, 2)


def checked_logits(model: Predictor, images: np.ndarray) -> np.ndarray:
    """Logits (N, C) of uint8 images (N, 3, R, R), normalised as the model says. Refuses NaN or
    infinite logits: their softmax is NaN, argmax picks class 0, and a score would be made up."""
    out = model.logits(np.ascontiguousarray(model.normalize(images)))
    bad = int((~np.isfinite(out)).any(axis=1).sum())
    if bad:
        raise EdgeTrainError(
            f"the model gives NaN or infinite logits for {bad} of {len(out)} images, so its "
            "predictions mean nothing (a diverged training run, or an altered model file)"
        )
    return out


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
    files, failed, bad_inputs = collect_images(inputs)
    result = PredictResult(failed=failed, bad_inputs=bad_inputs)
    k = min(top_k, len(model.classes))
    for batch_files, x in iter_batches(files, model.resolution, batch_size, result.failed):
        probs = softmax(checked_logits(model, x).astype(np.float64))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        for f, idx, p in zip(batch_files, order, probs, strict=True):
            top = [(model.classes[i], float(p[i])) for i in idx]
            result.predictions.append(Prediction(str(f), top))
    return result


def input_problem(result: PredictResult) -> str | None:
    """Why the call as a whole failed, for an exit status of 2 after the output: a path given
    that is neither a file nor a folder (a typo), or no prediction at all."""
    if result.bad_inputs:
        first = result.bad_inputs[0]
        reason = dict(result.failed)[first]
        more = f" (and {len(result.bad_inputs) - 1} more)" if len(result.bad_inputs) > 1 else ""
        return f"{first}: {reason}{more}"
    if not result.predictions and not result.failed:
        return "nothing predicted: no files in the folders given"
    if not result.predictions:
        return f"nothing predicted: none of the {len(result.failed)} file(s) could be used"
    return None


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
