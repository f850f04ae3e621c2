"""The run configuration: one frozen dataclass, defaults = the paper's protocol."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from edgetrain.errors import EdgeTrainError

Optimizer = Literal["adam", "sgd"]
Select = Literal["last", "best-val"]
Precision = Literal["fp32", "bf16"]


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
    # --- memory modes (each measurable alone) ---
    micro_batch: int | None = None  # split each batch into micro-batches of this size (grad accum.)
    checkpointing: bool = False  # recompute each backbone block's activations in backward
    precision: Precision = "fp32"  # bf16: autocast on CPU where supported
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
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise EdgeTrainError(f"unknown run config field(s): {sorted(unknown)}")
        try:
            cfg = cls(**d)
        except TypeError as exc:
            raise EdgeTrainError(f"invalid run config: {exc}") from None
        cfg.validate()
        return cfg

    def replace(self, **changes: Any) -> RunConfig:
        return RunConfig.from_dict({**self.to_dict(), **changes})

    @property
    def id(self) -> str:
        """Canonical id of what the run computes (not how many threads compute it)."""
        d = self.to_dict()
        d.pop("threads")
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return "run-" + hashlib.sha256(blob.encode()).hexdigest()[:12]

    def validate(self) -> None:
        """Raise `EdgeTrainError` for a configuration that cannot run, before anything starts."""
        from edgetrain.models.registry import get_model_factory

        get_model_factory(self.model)  # unknown model -> error listing close names
        if not isinstance(self.model_args, dict):
            raise EdgeTrainError("model_args must be a mapping of spec fields to values")
        checks = [
            (
                32 <= self.resolution <= 1024,
                f"resolution must be 32..1024 px, got {self.resolution}",
            ),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
            (
                self.optimizer in ("adam", "sgd"),
                f"optimizer must be adam or sgd, not {self.optimizer!r}",
            ),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
            (
                self.bn_momentum is None or 0 < self.bn_momentum <= 1,
                f"bn_momentum must be in (0, 1], got {self.bn_momentum}",
            ),
            (
                self.threads is None or self.threads >= 1,
                f"threads must be >= 1, got {self.threads}",
            ),
            (
                self.select in ("last", "best-val"),
                f"select must be last or best-val, not {self.select!r}",
            ),
            (
                self.precision in ("fp32", "bf16"),
                f"precision must be fp32 or bf16, not {self.precision!r}",
            ),
            (self.latency_repeat >= 1, "latency_repeat must be >= 1"),
            (
                self.memory_budget_mb is None or self.memory_budget_mb > 0,
                f"memory budget must be positive, got {self.memory_budget_mb}",
            ),
            (bool(self.data), "no dataset given (--data)"),
        ]
        if self.micro_batch is not None:
            checks.append(
                (
                    1 <= self.micro_batch <= self.batch_size,
                    f"micro-batch must be 1..batch size ({self.batch_size}), got {self.micro_batch}",
                )
            )
        for ok, msg in checks:
            if not ok:
                raise EdgeTrainError(msg)
        parse_scope(self.train_scope)


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
