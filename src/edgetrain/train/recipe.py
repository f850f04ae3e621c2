"""The short-run recipe: a learning-rate schedule per optimizer step and an exponential moving
average (EMA) of the weights. Label smoothing is one argument of the loss (step.py).

Why: with Adam at a constant 1e-3, the last epoch of a short run lands wherever the last steps
threw it, so seeds move test accuracy by several points. A rate that decays to ~0 and an average
of the last few hundred steps' weights both make the tested weights a settled point.

Both are stateless functions of the step count or of their own tensors, so a resumed run computes
exactly what an uninterrupted one would: the rate is recomputed from (epoch, step), the EMA's
tensors travel in the checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from edgetrain.train.modes import plain_state_dict

Schedule = Literal["constant", "cosine", "onecycle"]

# OneCycle's start and end rates as shares of the peak: PyTorch's OneCycleLR defaults
# (div_factor 25, final_div_factor 1e4), and its default warm-up share of the run.
ONECYCLE_START = 1 / 25
ONECYCLE_END = 1 / 25 / 1e4
ONECYCLE_WARMUP_SHARE = 0.3


def lr_at(
    step: int, *, base_lr: float, total_steps: int, warmup_steps: int, schedule: Schedule
) -> float:
    """The learning rate of optimizer step `step` (0-based) of `total_steps`.

    - constant: `base_lr`, after a linear warm-up over `warmup_steps` (step t uses
      base_lr * (t + 1) / warmup_steps, so the first step is not at rate 0).
    - cosine: the same warm-up, then base_lr * (1 + cos(pi * progress)) / 2, where progress runs
      from 0 at the first step after warm-up to 1 at the last step: the last step's rate is 0.
    - onecycle: a cosine rise from base_lr / 25 to base_lr over the warm-up (30 % of the run
      when `warmup_steps` is 0), then a cosine fall to base_lr / 2.5e5 at the last step.
    """
    total = max(int(total_steps), 1)
    t = min(max(int(step), 0), total - 1)
    if schedule == "onecycle":
        up = warmup_steps or round(ONECYCLE_WARMUP_SHARE * total)
        up = min(max(up, 1), total - 1) if total > 1 else 0
        if t < up:
            return _cos_between(base_lr * ONECYCLE_START, base_lr, t / up)
        return _cos_between(base_lr, base_lr * ONECYCLE_END, (t - up) / max(total - 1 - up, 1))
    warm = min(max(int(warmup_steps), 0), total)
    if t < warm:
        return base_lr * (t + 1) / warm
    if schedule == "constant":
        return base_lr
    return _cos_between(base_lr, 0.0, (t - warm) / max(total - 1 - warm, 1))


def _cos_between(start: float, end: float, progress: float) -> float:
    """Half a cosine from `start` (progress 0) to `end` (progress 1)."""
    return end + (start - end) * (1 + math.cos(math.pi * min(progress, 1.0))) / 2


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class WeightEma:
    """An exponential moving average of a model's floating-point parameters and buffers.

    After each optimizer step, `update(model)` moves every averaged tensor towards the model's:
    avg <- avg + (1 - d) * (current - avg), with d = min(decay, (1 + n) / (10 + n)) at the n-th
    update (n = 0 first), so that the first steps' random weights fade quickly in a short run
    (TensorFlow's ExponentialMovingAverage with `num_updates`). BatchNorm running statistics are
    averaged too; integer buffers (num_batches_tracked) are copied.

    `swapped_in(model)` puts the averages into the model for an evaluation and the trained
    weights back after, so recalibration, frozen scopes and device placement apply unchanged;
    `copy_to(model)` leaves them in (the tested model). Costs one fp32 copy of the weights.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.names = _averaged_names(model)
        live = _tensors(model, self.names)
        self.shadow = [t.detach().clone() for t in live]

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        live = _tensors(model, self.names)
        weight = 1.0 - self.current_decay()
        floats = [(a, b) for a, b in zip(self.shadow, live, strict=True) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [b for _, b in floats], weight)
        for a, b in zip(self.shadow, live, strict=True):
            if not a.is_floating_point():
                a.copy_(b)
        self.updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for live, avg in zip(_tensors(model, self.names), self.shadow, strict=True):
            live.copy_(avg)

    @contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[None]:
        live = _tensors(model, self.names)
        trained = [t.detach().clone() for t in live]
        self.copy_to(model)
        try:
            yield
        finally:
            with torch.no_grad():
                for t, saved in zip(live, trained, strict=True):
                    t.copy_(saved)

    def state_dict(self) -> dict[str, object]:
        return {
            "decay": self.decay,
            "updates": self.updates,
            "tensors": dict(zip(self.names, self.shadow, strict=True)),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        tensors = state["tensors"]
        if not isinstance(tensors, dict) or sorted(tensors) != sorted(self.names):
            raise ValueError("the checkpoint's EMA holds other tensors than this model")
        with torch.no_grad():
            for name, avg in zip(self.names, self.shadow, strict=True):
                avg.copy_(tensors[name])
        self.updates = int(state["updates"])  # type: ignore[call-overload]


def _averaged_names(model: nn.Module) -> list[str]:
    """Names of the state entries the EMA follows: the model's whole state dict (parameters and
    buffers), with checkpoint wrappers removed from the keys, so that a checkpoint is portable."""
    return list(plain_state_dict(model))


def _tensors(model: nn.Module, names: list[str]) -> list[torch.Tensor]:
    # state_dict() tensors share storage with the live parameters and buffers
    state = plain_state_dict(model)
    return [state[n] for n in names]
