"""An exported model in onnxruntime: loaded safely, checked against its sidecar, CPU only.

The .onnx file and its sidecar are untrusted. The file is read as a regular file of at most
`MAX_ONNX_MB`; its SHA-256 must match the sidecar's; `graphcheck` refuses what the memory cap
cannot bound (string tensors, external data, non-standard operators); the session runs on
onnxruntime's CPU execution provider only (no custom-op libraries are registered); and the
graph's input and output must agree with the sidecar's resolution and class count.
onnxruntime reads the file again by its path rather than from the bytes checked (from bytes, a
copy of the whole model would raise the peak RSS by its size), so the file's identity (inode,
size, change time) must be the same before the check and after the session is made: a file
replaced or rewritten in between is refused.

Memory: a 400-byte graph can ask for gigabytes (ConstantOfShape, Expand, Tile, Range with large
shapes). onnxruntime has no per-session byte limit, but its arena has one (`max_mem`): the
session allocates every tensor of a run from an arena registered with that cap, and a request
above it fails before any memory is taken. Constant folding is off, because it computes
constant subgraphs while the session is built, outside the arena (an 800 MB constant folded at
load took the peak to 1.6 GB under a 256 MB cap); edgetrain's exports are folded by the
exporter already, so no latency is lost (xception at 224 px, batch 1: 92 ms with and without).
The cap follows the input a batch holds: `memory_limit_bytes`. numpy and onnxruntime only.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetrain.deploy.graphcheck import check_graph
from edgetrain.deploy.sidecar import Sidecar, read_sidecar
from edgetrain.errors import EdgeTrainError, describe_os_error
from edgetrain.fileio import read_bounded
from edgetrain.threads import resolve_threads

MAX_ONNX_MB = 1024  # the largest model here is ~80 MB; protobuf itself stops at 2 GB
DEFAULT_BATCH = 32
# Memory a run may allocate per image, in sizes of its float32 input (3 x R x R x 4 bytes). The
# least cap each zoo model ran under at 224 px, batch 32: xception 33 inputs, mobilevit_xxs 20,
# mobilenet_v2 13, efficientnet_v2_b1 7 (weights are not in the arena). 128 leaves 4x headroom.
ARENA_INPUTS_PER_IMAGE = 128
ARENA_BASE_MB = 64  # for what does not grow with the batch


def memory_limit_bytes(resolution: int, batch_size: int) -> int:
    """The most a session may allocate for one run of `batch_size` images of `resolution` px."""
    per_image = 3 * resolution * resolution * 4
    return ARENA_BASE_MB * 2**20 + ARENA_INPUTS_PER_IMAGE * batch_size * per_image


@dataclass
class OnnxModel:
    """An onnxruntime session and its sidecar; `logits(x)` maps (N, 3, R, R) float32 to (N, C),
    in runs of at most `batch_size` images (the batch its memory cap was sized for)."""

    path: Path
    sidecar: Sidecar
    session: Any  # onnxruntime.InferenceSession
    batch_size: int = DEFAULT_BATCH

    @property
    def classes(self) -> list[str]:
        return self.sidecar.classes

    @property
    def resolution(self) -> int:
        return self.sidecar.resolution

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, 3, R, R) -> this model's input, as its sidecar says."""
        return self.sidecar.normalize(images)

    def logits(self, x: np.ndarray) -> np.ndarray:
        b = self.batch_size
        out = [self._run(x[i : i + b]) for i in range(0, len(x), b)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            out = self.session.run([self.sidecar.output_name], {self.sidecar.input_name: x})[0]
        except Exception as exc:  # onnxruntime's Fail, InvalidArgument, RuntimeException, ...
            raise EdgeTrainError(self._failure(exc)) from None
        out = np.asarray(out, dtype=np.float32)
        if out.shape != (len(x), len(self.classes)):
            raise EdgeTrainError(
                f"{self.path}: the model returned logits of shape {out.shape} for {len(x)} "
                f"images, not ({len(x)}, {len(self.classes)})"
            )
        return out

    def _failure(self, exc: Exception) -> str:
        """One line for an error of `session.run`: the memory cap said so, or the first line of
        onnxruntime's message."""
        text = str(exc).strip()
        asked = re.search(r"smaller than requested bytes of (\d+)", text)
        if asked:
            limit = memory_limit_bytes(self.resolution, self.batch_size)
            return (
                f"{self.path}: refused: the model asked for {int(asked[1]) / 2**20:,.0f} MB at "
                f"once, above the {limit / 2**20:,.0f} MB an image classifier of "
                f"{self.resolution} px may use at batch {self.batch_size}"
            )
        first = text.splitlines()[0] if text else type(exc).__name__
        first = first.replace("[ONNXRuntimeError] : ", "")
        return f"{self.path}: onnxruntime cannot run the model: {first[:300]}"


def load_onnx(
    path: str | Path,
    *,
    threads: int | None = None,
    sidecar: Sidecar | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> OnnxModel:
    """Open an exported .onnx with its sidecar (read from beside it unless given), for runs of up
    to `batch_size` images; raises `EdgeTrainError` for anything that does not fit."""
    path = Path(path)
    if not path.exists():
        raise EdgeTrainError(f"no model file at {path}")
    sidecar = sidecar or read_sidecar(path)
    before = _identity(path)
    _check_file(path, sidecar)
    limit = memory_limit_bytes(sidecar.resolution, batch_size)
    session = _session(path, resolve_threads(threads), limit)
    if _identity(path) != before:
        raise EdgeTrainError(f"{path} changed while it was loaded; load it when nothing writes it")
    _check_signature(path, session, sidecar)
    return OnnxModel(path, sidecar, session, batch_size)


def _check_file(path: Path, sidecar: Sidecar) -> None:
    """Size cap, regular file, SHA-256 against the sidecar, and `check_graph`; the bytes are
    dropped on return, before onnxruntime reads its own copy."""
    data = read_bounded(path, MAX_ONNX_MB * 2**20, "model file")
    if sidecar.onnx_sha256 and hashlib.sha256(data).hexdigest() != sidecar.onnx_sha256:
        raise EdgeTrainError(
            f"{path} does not match its sidecar (SHA-256 differs): the model file was replaced "
            "or altered after export; export it again"
        )
    check_graph(data, str(path))


def _identity(path: Path) -> tuple[int, ...]:
    """What changes when a file is replaced or written: the change time cannot be set back."""
    try:
        st = path.stat()
    except OSError as exc:
        raise EdgeTrainError(f"cannot read model file: {describe_os_error(exc)}") from None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _session(path: Path, threads: int | None, memory_limit: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # fatal only: errors come back as exceptions, made one line here
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    _cap_memory(ort, opts, memory_limit)
    try:
        return ort.InferenceSession(
            str(path),
            opts,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=["ConstantFolding"],
        )
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise EdgeTrainError(f"onnxruntime cannot load {path}: {reason}") from None


def _cap_memory(ort: Any, opts: Any, limit: int) -> None:
    """Make the session allocate from a CPU arena of at most `limit` bytes. The arena is the
    environment's (the one place onnxruntime takes a cap); registering a new one replaces it for
    sessions made later, while a session keeps the arena it was made with."""
    info = ort.OrtMemoryInfo(
        "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
    )
    # extend strategy 1 (kSameAsRequested): grow by what is asked, not by powers of two
    cfg = ort.OrtArenaCfg({"max_mem": int(limit), "arena_extend_strategy": 1})
    ort.create_and_register_allocator(info, cfg)
    opts.add_session_config_entry("session.use_env_allocators", "1")


def _check_signature(path: Path, session: Any, sidecar: Sidecar) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o.shape for o in session.get_outputs()}
    given = inputs.get(sidecar.input_name)
    shape_out = outputs.get(sidecar.output_name)
    if given is None or shape_out is None:
        raise EdgeTrainError(
            f"{path}: the graph has inputs {list(inputs)} and outputs {list(outputs)}, but the "
            f"sidecar names {sidecar.input_name!r} and {sidecar.output_name!r}"
        )
    r, shape_in = sidecar.resolution, given.shape
    if given.type != "tensor(float)" or len(shape_in) != 4 or list(shape_in[1:]) != [3, r, r]:
        raise EdgeTrainError(
            f"{path}: input {given.type} {shape_in} does not fit the sidecar's resolution "
            f"(float32 N, 3, {r}, {r})"
        )
    if len(shape_out) != 2 or shape_out[1] != sidecar.num_classes:
        raise EdgeTrainError(
            f"{path}: class count mismatch: the model's output has shape {shape_out}, the "
            f"sidecar lists {sidecar.num_classes} classes; export the model again"
        )
