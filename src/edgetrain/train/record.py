"""The run record's schema: every number a run produced, typed, with units in the field names.

Units: `*_mb` MiB (2**20 bytes), `*_s` seconds, `*_ms` milliseconds, `*_permille` thousandths,
accuracies are fractions in [0, 1], `macs` multiply-accumulates of one forward pass of one image.

`record.json` holds `RunRecord.to_dict()` with a `schema_version`. Records written before the
schema had a version (version 1, the same keys) load unchanged; a record that lacks one of the
REQUIRED fields is refused with a message naming them, and so is one whose values no run can
produce (`check_values`): a value of the wrong type (a string where a number belongs), an
accuracy outside [0, 1], negative or non-finite memory, time or counts.
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
import typing
from dataclasses import dataclass, field
from types import NoneType, UnionType
from typing import Any

from edgetrain.errors import EdgeTrainError

SCHEMA_VERSION = 2  # 1: the untyped dict of edgetrain 0.1.0 (same keys, no version field)


@dataclass(frozen=True)
class RunRecord:
    """What one finished training run measured. `config` is the resolved RunConfig as a dict."""

    # --- what ran (required) ---
    model: str
    data: str  # the dataset reference
    config: dict[str, Any]
    # --- accuracy of the selected model on the test split (required) ---
    test_accuracy: float
    # --- memory of the training process (required) ---
    peak_rss_mb: float  # max over epochs of max(sampled RSS, kernel high-water mark)
    mean_rss_mb: float  # time-weighted mean RSS over training
    baseline_rss_mb: float  # model built, data cached, before the first step
    peak_above_baseline_mb: float  # what training added (per process segment when resumed)
    # --- time (required) ---
    epoch_s: float  # mean wall time of an epoch (training only)
    history: list[dict[str, Any]]  # one row per epoch, as in history.csv
    # --- identity ---
    schema_version: int = SCHEMA_VERSION
    status: str = (
        "finished"  # or "stopped_early": asked to stop (stop_reason) before the last epoch
    )
    stop_reason: str | None = None
    run_id: str | None = None  # RunConfig.id: what the run computes
    edgetrain_version: str | None = None
    started: str | None = None  # ISO 8601, UTC
    finished: str | None = None
    resumed: bool = False
    classes: list[str] = field(default_factory=list)
    split_counts: dict[str, int] = field(default_factory=dict)  # images trained/tested on
    # every file left out, with its reason: {file, reason, stage: resolve|decode, split}
    skipped_files: list[dict[str, Any]] = field(default_factory=list)
    augment: bool | None = None
    # --- accuracy details ---
    test_macro_f1: float | None = None
    test_loss: float | None = None
    test_per_class_accuracy: list[float | None] | None = None
    test_confusion: list[list[int]] | None = None  # rows: true class, columns: predicted
    val_accuracy: float | None = None  # the last epoch's; None without a val split
    # BatchNorm recalibration (train/bnstats.py): the accuracies above use statistics
    # re-estimated from this many training images; the *_as_trained ones the running averages
    # training left (the paper's evaluation). 0 images: recalibration was off, both agree.
    bn_recalibration_images: int | None = None
    test_accuracy_as_trained: float | None = None
    # recalibrated unless the as-trained statistics won on the last epoch's validation
    # accuracy (engine.finish); both test accuracies are kept
    bn_statistics: str | None = None  # "recalibrated" | "as trained"
    test_accuracy_recalibrated: float | None = None
    val_accuracy_as_trained: float | None = None
    precision: str | None = None  # fp32 | bf16 (autocast) | fp16: what the steps computed in
    precision_reason: str | None = None  # why: asked for, or what `auto` measured
    # --- where it ran (the resolved --accelerator) ---
    accelerator: str | None = None  # "cpu" or "cuda:N"
    device_name: str | None = None  # the CPU's or the GPU's model name
    # a GPU sharing the CPU's RAM (Jetson): its training footprint is RSS plus the allocations
    unified_memory: bool | None = None
    gpu_peak_allocated_mb: float | None = None  # max over epochs of the allocator's peaks
    gpu_peak_reserved_mb: float | None = None  # what the caching allocator held from the driver
    gpu_process_mb: float | None = None  # device memory this process held (NVML), if readable
    # what training needs of the device's memory: peak_above_baseline_mb on the CPU, the GPU's
    # peak allocations on a discrete GPU, their sum on a unified-memory board (Jetson)
    training_footprint_mb: float | None = None
    # --- memory details ---
    ru_maxrss_mb: float | None = None  # the process's lifetime high-water mark (decode included)
    analytic_mb: float | None = None  # weights + grads + optimizer state + saved for backward
    analytic: dict[str, float] | None = None  # the parts of analytic_mb
    measured_over_analytic: float | None = None  # peak above baseline / analytic above weights
    system_ram_permille: float | None = None  # the paper's measure: machine RAM in use, mean
    system_ram_permille_per_epoch: list[float] = field(default_factory=list)
    # --- time details ---
    train_step_ms: float | None = None  # median optimizer step after warm-up
    train_images_per_s: float | None = None  # batch size / train_step_ms
    total_train_s: float | None = None
    infer_latency_ms_b1: float | None = None
    infer_latency_ms_b16: float | None = None
    # --- the exported model (`edgetrain export`; onnxruntime, CPU, each in a fresh process) ---
    onnx_latency_ms_b1: float | None = None  # median, next to infer_latency_ms_* (PyTorch eager)
    onnx_latency_ms_b16: float | None = None
    onnx_int8_latency_ms_b1: float | None = None
    onnx_int8_latency_ms_b16: float | None = None
    onnx_file_mb: float | None = None
    onnx_int8_file_mb: float | None = None
    onnx_test_accuracy: float | None = None  # the .onnx files on the test split, measured
    onnx_int8_test_accuracy: float | None = None
    infer_peak_rss_mb: float | None = None  # whole-process peak of onnxruntime inference (fp32)
    # --- the model ---
    params_trainable: int | None = None  # parameters the optimizer updates
    params_total: int | None = None  # all parameters
    bn_stats: int | None = None  # BatchNorm running mean + variance elements
    macs: int | None = None
    init: dict[str, int] | None = None  # --init: tensors loaded / re-initialised
    plan: dict[str, Any] | None = None  # the memory plan, when a budget was given
    environment: dict[str, Any] = field(default_factory=dict)
    # --- set by the bench when a run is a cell of a study ---
    run_dir: str | None = None
    dataset: str | None = None  # the experiment's dataset label
    cell_id: str | None = None
    # keys this schema does not know (a newer edgetrain, another tool): kept, not interpreted
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**d, **self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "record") -> RunRecord:
        """Load a record of any schema version up to ours; name what is missing."""
        if not isinstance(d, dict):
            raise EdgeTrainError(f"{source}: a run record must be a JSON object")
        version = d.get("schema_version", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise EdgeTrainError(
                f"{source}: record schema version {version!r} is newer than this edgetrain "
                f"reads ({SCHEMA_VERSION}); upgrade edgetrain"
            )
        missing = [n for n in REQUIRED if d.get(n) is None]
        if missing:
            raise EdgeTrainError(f"{source}: not a finished run record, missing {missing}")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        fields = {k: v for k, v in d.items() if k in known}
        extra = {k: v for k, v in d.items() if k not in known}
        check_values(fields, source)
        return cls(**{**fields, "schema_version": SCHEMA_VERSION, "extra": extra})

    def replace(self, **changes: Any) -> RunRecord:
        return dataclasses.replace(self, **changes)


REQUIRED = tuple(
    f.name
    for f in dataclasses.fields(RunRecord)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
)


# --- what values a run can produce ---------------------------------------------------------------

_FIELD_TYPES = {k: v for k, v in typing.get_type_hints(RunRecord).items() if k != "extra"}
_TYPE_WORDS = {float: "a number", int: "an integer", str: "a string", bool: "true or false",
               list: "a list", dict: "an object"}  # fmt: skip


def check_values(fields: dict[str, Any], source: str) -> None:
    """Refuse a record whose fields no run can produce, naming the first few of them."""
    problems = [
        why
        for name, value in fields.items()
        if name in _FIELD_TYPES and (why := _problem(name, value)) is not None
    ]
    if problems:
        raise EdgeTrainError(f"{source}: impossible run record: {'; '.join(problems[:4])}")


def _problem(name: str, value: Any) -> str | None:
    tp = _FIELD_TYPES[name]
    if not _conforms(value, tp):
        return f"{name} must be {_describe(tp)}, got {reprlib.repr(value)}"
    numbers = value if isinstance(value, list) else [value]
    bound = _bound(name)
    for v in numbers:
        if isinstance(v, int | float) and not isinstance(v, bool) and bound is not None:
            low, high, words = bound
            if not (math.isfinite(v) and low <= v <= high):
                return f"{name} must be {words}, got {reprlib.repr(v)}"
    return None


def _bound(name: str) -> tuple[float, float, str] | None:
    """(low, high, in words) of what a field can hold, from its name's unit (module doc)."""
    if name.endswith("accuracy") or "_accuracy_" in name or name == "test_macro_f1":
        return 0.0, 1.0, "a fraction in [0, 1]"
    if "_permille" in name:
        return 0.0, 1000.0, "a number in [0, 1000]"
    if name.endswith("_mb") or "_ms" in name or name.endswith("_s"):
        return 0.0, math.inf, "a number >= 0"
    if name in ("params_trainable", "params_total", "bn_stats", "macs", "bn_recalibration_images"):
        return 0.0, math.inf, "an integer >= 0"
    return None


def _conforms(value: Any, tp: Any) -> bool:
    """Whether `value` (parsed JSON) is of the annotated type `tp`; a bool is not a number.
    An object's values are not checked: the nested annotations describe, they do not bind
    (`analytic` also holds a flag, `environment` whatever the machine reported)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, UnionType):
        return any(_conforms(value, a) for a in args)
    if tp is NoneType:
        return value is None
    if tp in (float, int) and isinstance(value, bool):
        return False
    if tp is float:
        return isinstance(value, int | float)
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, tp)


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, UnionType):
        return " or ".join("null" if a is NoneType else _describe(a) for a in args)
    return _TYPE_WORDS.get(origin or tp, str(tp))
