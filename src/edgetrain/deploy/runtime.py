"""An exported model in onnxruntime: loaded safely, checked against its sidecar, CPU only.

The .onnx file and its sidecar are untrusted: the file's size is capped, its SHA-256 must match
the sidecar's, the session runs on onnxruntime's CPU execution provider only (no custom-op
libraries are registered), and the graph's input and output shapes must agree with the sidecar's
resolution and class count. numpy and onnxruntime only: no torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetrain.deploy.sidecar import Sidecar, read_sidecar, sha256_file
from edgetrain.errors import EdgeTrainError

MAX_ONNX_MB = 1024  # the largest model here is ~80 MB; protobuf itself stops at 2 GB


@dataclass
class OnnxModel:
    """An onnxruntime session and its sidecar; `logits(x)` maps (N, 3, R, R) float32 to (N, C)."""

    path: Path
    sidecar: Sidecar
    session: Any  # onnxruntime.InferenceSession

    @property
    def classes(self) -> list[str]:
        return self.sidecar.classes

    @property
    def resolution(self) -> int:
        return self.sidecar.resolution

    def logits(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run([self.sidecar.output_name], {self.sidecar.input_name: x})[0]
        return np.asarray(out, dtype=np.float32)


def load_onnx(
    path: str | Path, *, threads: int | None = None, sidecar: Sidecar | None = None
) -> OnnxModel:
    """Open an exported .onnx with its sidecar (read from beside it unless given); raises
    `EdgeTrainError` for anything that does not fit."""
    path = Path(path)
    if not path.is_file():
        raise EdgeTrainError(f"no model file at {path}")
    size_mb = path.stat().st_size / 2**20
    if size_mb > MAX_ONNX_MB:
        raise EdgeTrainError(f"{path} is {size_mb:.0f} MB, above the {MAX_ONNX_MB} MB limit")
    sidecar = sidecar or read_sidecar(path)
    if sidecar.onnx_sha256 and sha256_file(path) != sidecar.onnx_sha256:
        raise EdgeTrainError(
            f"{path} does not match its sidecar (SHA-256 differs): the model file was replaced "
            "or altered after export; export it again"
        )
    session = _session(path, threads)
    _check_signature(path, session, sidecar)
    return OnnxModel(path, sidecar, session)


def _session(path: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    elif os.environ.get("EDGETRAIN_THREADS"):
        opts.intra_op_num_threads = int(os.environ["EDGETRAIN_THREADS"])
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise EdgeTrainError(f"onnxruntime cannot load {path}: {reason}") from None


def _check_signature(path: Path, session: Any, sidecar: Sidecar) -> None:
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = {o.name: o.shape for o in session.get_outputs()}
    shape_in = inputs.get(sidecar.input_name)
    shape_out = outputs.get(sidecar.output_name)
    if shape_in is None or shape_out is None:
        raise EdgeTrainError(
            f"{path}: the graph has inputs {list(inputs)} and outputs {list(outputs)}, but the "
            f"sidecar names {sidecar.input_name!r} and {sidecar.output_name!r}"
        )
    r = sidecar.resolution
    if len(shape_in) != 4 or list(shape_in[1:]) != [3, r, r]:
        raise EdgeTrainError(
            f"{path}: input shape {shape_in} does not fit the sidecar's resolution (N, 3, {r}, {r})"
        )
    if len(shape_out) != 2 or shape_out[1] != sidecar.num_classes:
        raise EdgeTrainError(
            f"{path}: class count mismatch: the model outputs {shape_out[-1]} classes, the "
            f"sidecar lists {sidecar.num_classes}; export the model again"
        )
