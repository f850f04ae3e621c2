"""The state of one training run, shared by the engine's prepare -> loop -> finish phases."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from edgetrain.data import BatchLoader, Splits
from edgetrain.measure import RssSampler
from edgetrain.train.accelerator import Accelerator
from edgetrain.train.bnstats import CalibrationSample
from edgetrain.train.config import RunConfig
from edgetrain.train.recipe import WeightEma
from edgetrain.train.rundir import RunDir


@dataclass(frozen=True)
class Feedback:
    """What the person running training sees: a progress bar, or one log line per event."""

    progress: bool = True  # rich progress bar and plan table on stderr
    log: Callable[[str], None] = lambda _msg: None  # one line per epoch, plan, resume

    def __call__(self, msg: str) -> None:
        self.log(msg)


@dataclass(frozen=True)
class ModelFacts:
    """Counted once when the model is built (before any mode changes it)."""

    params_total: int  # every parameter, trainable or not
    bn_stats: int  # BatchNorm running mean + variance elements
    macs: int  # one forward pass of one image at the run's resolution
    init_info: dict[str, int] | None  # --init: tensors loaded / re-initialised


@dataclass
class RunState:
    """Everything the loop reads and writes. Built by `engine.prepare`, consumed by `finish`."""

    config: RunConfig  # resolved: the memory plan's choices applied
    run: RunDir
    splits: Splits
    augment: bool
    train_loader: BatchLoader
    eval_loaders: dict[str, BatchLoader]  # "val" (absent when empty) and "test"
    calibration: CalibrationSample | None  # BatchNorm recalibration sample (None: off)
    model: nn.Module
    frozen: list[nn.Module]  # BatchNorm of these stays in eval mode (frozen by the scope)
    optimizer: torch.optim.Optimizer
    ema: WeightEma | None  # the averaged weights (ema_decay > 0), evaluated instead of the model
    accel: Accelerator
    sampler: RssSampler
    facts: ModelFacts
    feedback: Feedback
    started: str  # ISO 8601 UTC
    resumed: bool = False
    precision_reason: str | None = None  # how `config.precision` was chosen (precision.py)
    bn_statistics: str | None = None  # which BatchNorm statistics were tested (engine.finish)
    # --- what the loop accumulates ---
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per finished epoch
    start_epoch: int = 0
    best_val_accuracy: float = -1.0
    baseline_rss_mb: float = 0.0  # this process segment's RSS before its first step
    hwm_ok: bool = False  # the kernel's RSS high-water mark can be reset (Linux)
    step_ms: list[float] = field(default_factory=list)  # every step of this process segment
    footprint: dict[str, float] | None = None  # analytic footprint of the first step

    @property
    def classes(self) -> list[str]:
        return list(self.splits.classes)

    @property
    def num_classes(self) -> int:
        return len(self.splits.classes)

    @property
    def micro_batch(self) -> int:
        return self.config.micro_batch or self.config.batch_size

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]


@dataclass
class EpochTotals:
    """Running sums over one epoch's steps."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0

    def add(self, loss: float, n_correct: int, n: int) -> None:
        self.loss_sum += loss * n
        self.correct += n_correct
        self.seen += n

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.seen, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.seen, 1)
