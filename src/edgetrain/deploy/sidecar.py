"""The sidecar: a small JSON file next to an exported model that says how to feed it.

`model.onnx` has `model.onnx.json` beside it: class names, input resolution, normalisation
(x * scale + offset on 0..255 pixels), input/output names, the model's spec id, the source run,
and checksums (SHA-256 of the .onnx file and of the checkpoint it came from). A sidecar is
untrusted input: its size is capped and every field is type- and range-checked before use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetrain.errors import EdgeTrainError
from edgetrain.fileio import atomic_write_text, parse_json, read_text_bounded

FORMAT = "edgetrain-onnx-sidecar"
VERSION = 1
MAX_SIDECAR_BYTES = 1 << 20  # 1 MB: a sidecar is a few hundred bytes plus the class names
MAX_CLASSES = 100_000


@dataclass(frozen=True)
class Sidecar:
    """How to run one exported model. Pixels are normalised as `uint8 * scale + offset`."""

    classes: list[str]
    resolution: int  # square input side, px
    scale: float = 1 / 127.5  # training's normalisation: x / 127.5 - 1 -> [-1, 1]
    offset: float = -1.0
    input_name: str = "input"  # float32 (N, 3, R, R), N dynamic
    output_name: str = "logits"  # float32 (N, num_classes)
    precision: str = "fp32"  # fp32 | int8 (static QDQ quantisation)
    model: str = ""  # registry name, e.g. xception_lite
    spec_id: str = ""  # canonical id of the architecture
    source_run: str = ""  # the run directory exported
    run_id: str = ""  # RunConfig.id of that run
    data: str = ""  # the dataset reference the run trained on
    split_seed: int = 0  # its split seed: `edgetrain evaluate` picks the same test split
    folds: int = 0  # and its cross-validation fold (folds 0: the data's own split)
    fold: int = 0
    onnx_sha256: str = ""  # of the .onnx file this sidecar describes
    checkpoint_sha256: str = ""  # of the checkpoint the weights came from
    parity_max_abs_diff: float | None = None  # onnxruntime vs PyTorch logits at export

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N, 3, R, R) -> the model's float32 input, `x * scale + offset`. With the
        default fields this is bit for bit `edgetrain.preprocess.normalize` (x - 1 == x + -1)."""
        return images.astype(np.float32) * np.float32(self.scale) + np.float32(self.offset)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, **dataclasses.asdict(self)}


def sidecar_path(onnx_path: str | Path) -> Path:
    """`model.onnx` -> `model.onnx.json`."""
    p = Path(onnx_path)
    return p.with_name(p.name + ".json")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_sidecar(onnx_path: str | Path, sidecar: Sidecar) -> Path:
    path = sidecar_path(onnx_path)
    atomic_write_text(path, json.dumps(sidecar.to_dict(), indent=2) + "\n")
    return path


def read_sidecar(onnx_path: str | Path) -> Sidecar:
    """Read and validate the sidecar of `onnx_path`; `EdgeTrainError` naming what is wrong."""
    path = sidecar_path(onnx_path)
    if not path.exists():
        raise EdgeTrainError(
            f"{onnx_path} has no sidecar ({path.name} is missing): export the model with "
            "`edgetrain export RUN_DIR`, which writes both files, and keep them together"
        )
    text = read_text_bounded(path, MAX_SIDECAR_BYTES, "sidecar")
    return parse_sidecar(parse_json(text, str(path)), source=str(path))


def parse_sidecar(d: Any, *, source: str = "sidecar") -> Sidecar:
    """Validate a decoded sidecar JSON object field by field."""
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise EdgeTrainError(f"{source}: not an edgetrain sidecar (format must be {FORMAT!r})")
    if not isinstance(d.get("version"), int) or d["version"] > VERSION:
        raise EdgeTrainError(f"{source}: sidecar version {d.get('version')!r} is not supported")
    known = {f.name for f in dataclasses.fields(Sidecar)}
    fields = {k: v for k, v in d.items() if k in known}
    problems = _problems(fields)
    if problems:
        raise EdgeTrainError(f"{source}: invalid sidecar: {'; '.join(problems)}")
    try:
        return Sidecar(**fields)
    except TypeError as exc:
        raise EdgeTrainError(f"{source}: invalid sidecar: {exc}") from None


def _problems(f: dict[str, Any]) -> list[str]:
    out = []
    classes = f.get("classes")
    if (
        not isinstance(classes, list)
        or not 1 <= len(classes) <= MAX_CLASSES
        or not all(isinstance(c, str) and 0 < len(c) <= 256 for c in classes)
        or len(set(classes)) != len(classes)
    ):
        out.append("classes must be a list of distinct, non-empty names")
    r = f.get("resolution")
    if not isinstance(r, int) or isinstance(r, bool) or not 16 <= r <= 4096:
        out.append(f"resolution must be an integer 16..4096, got {r!r}")
    for k in ("scale", "offset"):
        v = f.get(k, 0.0)
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            out.append(f"{k} must be a finite number")
    if f.get("scale") == 0:  # every image would become the same input
        out.append("scale must not be 0")
    if f.get("precision", "fp32") not in ("fp32", "int8"):
        out.append("precision must be fp32 or int8")
    seed = f.get("split_seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        out.append("split_seed must be an integer")
    for k in ("folds", "fold"):
        v = f.get(k, 0)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 100:
            out.append(f"{k} must be an integer 0..100")
    for k in ("input_name", "output_name", "model", "spec_id", "source_run", "run_id", "data"):
        if not isinstance(f.get(k, ""), str) or len(f.get(k, "")) > 4096:
            out.append(f"{k} must be a string")
    for k in ("onnx_sha256", "checkpoint_sha256"):
        v = f.get(k, "")
        if not isinstance(v, str) or (v and len(v) != 64):
            out.append(f"{k} must be a SHA-256 hex digest")
    return out
