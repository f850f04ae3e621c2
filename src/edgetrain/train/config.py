"""The run configuration: one frozen dataclass, defaults = the paper's protocol."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from edgetrain.errors import EdgeTrainError
from edgetrain.threads import check_thread_range

Optimizer = Literal["adam", "sgd"]
Select = Literal["last", "best-val"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Schedule = Literal["constant", "cosine", "onecycle"]


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a training run. Saved as `config.json` next to every result."""

    model: str
    data: str  # a dataset reference, e.g. "synthetic-pcb", "caltech101:/data/101_ObjectCategories"
    model_args: dict[str, Any] = field(default_factory=dict)  # spec overrides, e.g. middle_depth
    resolution: int = 224
    batch_size: int = 16  # the effective batch: what one optimizer step sees
    epochs: int = 60
    lr: float = 1e-3
    optimizer: Optimizer = "adam"
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    dropout: float = 0.2
    # BatchNorm running-statistics update rate (PyTorch convention: weight of the new batch).
    # None: each architecture's Keras value (0.01 Xception, 0.001 MobileNetV2, 0.1 EfficientNetV2),
    # which needs thousands of steps to settle; short runs evaluate better with ~0.1.
    bn_momentum: float | None = None
    seed: int = 0  # weights, data order, augmentation, dropout
    split_seed: int = 0  # which images go to train/val/test; fixed across seeds by default
    threads: int | None = None  # torch intra-op threads; None: torch's default (all cores)
    channels_last: bool = True  # NHWC: faster on CPU for every model here, same numbers
    augment: bool | None = None  # None: the dataset's default (on for Caltech, off for PCB)
    select: Select = "last"  # which model is tested: the last epoch's (the paper) or best val
    # re-estimate BatchNorm statistics from this many training images before every evaluation
    # (train/bnstats.py); 0 evaluates with the running averages as trained (the paper)
    bn_recalibration_images: int = 1024
    # --- the short-run recipe (train/recipe.py); the defaults are the paper's protocol ---
    # learning rate per optimizer step: constant (the paper), cosine (to 0 at the last step) or
    # onecycle (up from lr/25, down to lr/2.5e5), each after a linear warm-up of warmup_epochs
    lr_schedule: Schedule = "constant"
    warmup_epochs: float = 0.0  # onecycle: its rising phase (0: 30 % of the run)
    label_smoothing: float = 0.0  # share of each target spread over all classes (training loss)
    # exponential moving average of the weights, updated after every step; the average is what
    # is validated, tested, saved as tested.pt and exported. 0: off (the paper)
    ema_decay: float = 0.0
    # --- cross-validation (data/folds.py) ---
    folds: int = 0  # 0: the dataset's own split; K >= 2: K folds by group (or class)
    fold: int = 0  # which fold is the test split (0..K-1); the next one is validation
    # --- memory modes (each measurable alone) ---
    micro_batch: int | None = None  # split each batch into micro-batches of this size (grad accum.)
    checkpointing: bool = False  # recompute each backbone block's activations in backward
    # auto: bf16 where the CPU or GPU has it natively and a timed step shows it faster for this
    # model, fp16 on a GPU without bf16, else fp32 (train/precision.py; the run's config and
    # record hold what was chosen); bf16: autocast where native; fp16: CUDA, gradient scaling
    precision: Precision = "auto"
    # where training computes: auto (a CUDA GPU when PyTorch sees one, else the CPU), cpu, cuda,
    # cuda:N; what it resolved to is in the record (`accelerator`)
    accelerator: str = "auto"
    inplace_act: bool = True  # activations after BatchNorm overwrite their input (where safe)
    # --- memory budget ---
    memory_budget_mb: float | None = None  # whole-process peak RSS the run must stay under
    device: str | None = None  # a device profile (threads and budget), e.g. raspberry-pi-4-4gb
    # --- transfer learning ---
    init: str | None = None  # a run directory or checkpoint file whose weights start this run
    train_scope: str = "all"  # all | head | last:N | bias
    # --- measurement ---
    latency_repeat: int = 20  # timed inference batches per batch size (after 5 warm-up)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form labels (kept, not interpreted)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: Any) -> RunConfig:
        """The one way in for every config source (config.json, --config, an experiment's [run]
        table, overrides): unknown fields, wrong types and out-of-range values are refused with
        a message naming the field."""
        if not isinstance(d, dict):
            raise EdgeTrainError(f"a run config must be a mapping of fields, not {_kind(d)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = [str(k) for k in d if k not in known]
        if unknown:
            raise EdgeTrainError(f"unknown run config field(s): {sorted(unknown)}")
        missing = [n for n in ("model", "data") if n not in d]
        if missing:
            raise EdgeTrainError(f"a run config needs {' and '.join(missing)}")
        hints = typing.get_type_hints(cls)
        for name, value in d.items():
            if not _fits(value, hints[name]):
                raise EdgeTrainError(
                    f"run config field {name!r} must be {_describe(hints[name])}, "
                    f"got {_kind(value)}{_short(value)}"
                )
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def replace(self, **changes: Any) -> RunConfig:
        return RunConfig.from_dict({**self.to_dict(), **changes})

    @property
    def id(self) -> str:
        """Canonical id of what the run computes (not how many threads compute it, nor on which
        device: a run may move between devices on resume)."""
        d = self.to_dict()
        d.pop("threads")
        d.pop("accelerator")
        for name, default in _ADDED_LATER.items():  # earlier runs keep their ids
            if d.get(name) == default:
                d.pop(name)
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return "run-" + hashlib.sha256(blob.encode()).hexdigest()[:12]

    def validate(self) -> None:
        """Raise `EdgeTrainError` for a configuration that cannot run, before anything starts."""
        from edgetrain.models.found import is_spec_id, spec_of
        from edgetrain.models.registry import get_model_factory

        if not isinstance(self.model_args, dict):
            raise EdgeTrainError("model_args must be a mapping of spec fields to values")
        if is_spec_id(self.model):  # a found architecture: model_args hold its spec
            spec_of(self.model, self.model_args)
        else:
            get_model_factory(self.model)  # unknown model -> error listing close names
        if not self.data:
            raise EdgeTrainError("no dataset given (--data)")
        for name, (lo, hi, what) in _RANGES.items():
            value = getattr(self, name)
            if value is not None and not lo <= value <= hi:
                raise EdgeTrainError(f"{name.replace('_', ' ')} must be {what}, got {value}")
        check_thread_range(self.threads)  # the CPUs are checked where threads start
        if self.micro_batch is not None and self.micro_batch > self.batch_size:
            raise EdgeTrainError(
                f"micro_batch must be 1..batch size ({self.batch_size}), got {self.micro_batch}"
            )
        if self.dropout >= 1 or (self.momentum >= 1 and self.optimizer == "sgd"):
            raise EdgeTrainError("dropout and momentum must be below 1")
        if self.lr <= 0 or (self.bn_momentum is not None and self.bn_momentum <= 0):
            raise EdgeTrainError("lr and bn_momentum must be > 0")
        parse_scope(self.train_scope)
        if self.warmup_epochs > self.epochs:
            raise EdgeTrainError(
                f"warmup epochs must be at most the epochs ({self.epochs}), got {self.warmup_epochs}"
            )
        if self.folds == 1 or (self.folds == 0 and self.fold != 0):
            raise EdgeTrainError(
                "folds must be 0 (the dataset's own split) or at least 2, and fold needs folds"
            )
        if self.folds and self.fold >= self.folds:
            raise EdgeTrainError(
                f"fold must be 0..{self.folds - 1} for {self.folds} folds, got {self.fold}"
            )
        from edgetrain.train.accelerator import check_accelerator_syntax  # imports torch

        check_accelerator_syntax(self.accelerator)


# sane limits on every number a user can type: (low, high, how to say it); None = not set
_RANGES: dict[str, tuple[float, float, str]] = {
    "resolution": (32, 1024, "32..1024 px"),
    "batch_size": (1, 4096, "1..4096"),
    "epochs": (1, 100_000, "1..100000"),
    "lr": (0, 100, "in (0, 100]"),
    "momentum": (0, 1, "in [0, 1)"),
    "weight_decay": (0, 1, "in [0, 1]"),
    "dropout": (0, 1, "in [0, 1)"),
    "bn_momentum": (0, 1, "in (0, 1]"),
    "seed": (0, 2**32 - 1, "0..2^32-1"),
    "split_seed": (0, 2**32 - 1, "0..2^32-1"),
    "micro_batch": (1, 4096, "1..batch size"),
    "memory_budget_mb": (1, 2**30, "a positive size"),
    "latency_repeat": (1, 10_000, "1..10000"),
    "bn_recalibration_images": (0, 1_000_000, "0..1000000 (0: off)"),
    "warmup_epochs": (0, 100_000, "0..epochs"),
    "label_smoothing": (0, 0.99, "in [0, 0.99]"),
    "ema_decay": (0, 0.999999, "in [0, 1) (0: off)"),
    "folds": (0, 100, "0 (off) or 2..100"),
    "fold": (0, 99, "0..folds-1"),
}

# Fields added after run ids were first computed, with their defaults: left out of the id while
# at the default, so that the runs and bench cells of earlier versions keep their ids.
_ADDED_LATER: dict[str, Any] = {
    "lr_schedule": "constant",
    "warmup_epochs": 0.0,
    "label_smoothing": 0.0,
    "ema_decay": 0.0,
    "folds": 0,
    "fold": 0,
}


def _fits(value: Any, hint: Any) -> bool:
    """Does a JSON/TOML value fit a field's annotation (int, float, bool, str, Literal,
    X | None, dict[str, Any])? bool is not accepted as a number; an int is a float."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is typing.Literal:
        return isinstance(value, str) and value in args
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok and math.isfinite(value)
    if hint is str:
        return isinstance(value, str) and "\x00" not in value
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    return False


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is dict:
        return "a mapping"
    names = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string"}
    return names.get(hint, "null" if hint is type(None) else str(hint))


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _short(value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    text = repr(value)
    return " " + (text if len(text) <= 40 else text[:37] + "...")


def parse_scope(scope: str) -> tuple[str, int]:
    """'all' | 'head' | 'bias' | 'last:N' -> (kind, N)."""
    if scope in ("all", "head", "bias"):
        return scope, 0
    if scope.startswith("last:"):
        try:
            n = int(scope.split(":", 1)[1])
        except ValueError:
            n = 0
        if n >= 1:
            return "last", n
    raise EdgeTrainError(
        f"train scope must be all, head, bias or last:N (N >= 1 backbone blocks), got {scope!r}"
    )
