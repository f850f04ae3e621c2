"""A run within a memory budget: the device profile's defaults, the plan made before training,
and the guard that stops training (with a checkpoint) if the process crosses the budget."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from edgetrain.errors import EdgeTrainError
from edgetrain.measure import MB, peak_rss_bytes
from edgetrain.train.config import RunConfig
from edgetrain.train.devices import load_device
from edgetrain.train.modes import plain_state_dict
from edgetrain.train.planner import Plan, fixed_training_bytes, make_plan
from edgetrain.train.probe import probe_in_subprocess
from edgetrain.train.state import RunState


class MemoryBudgetExceeded(EdgeTrainError):
    """The process RSS crossed the run's memory budget; training stopped with a checkpoint."""


def apply_device_profile(config: RunConfig) -> RunConfig:
    """A device profile fills in the threads and the memory budget the user did not give."""
    if not config.device:
        return config
    dev = load_device(config.device)
    changes: dict[str, Any] = {}
    if config.threads is None:
        changes["threads"] = dev.threads
    if config.memory_budget_mb is None:
        changes["memory_budget_mb"] = dev.budget_bytes / MB
    if config.accelerator == "auto" and dev.accelerator != "cpu":
        changes["accelerator"] = dev.accelerator
    return config.replace(**changes) if changes else config


def plan_memory(
    config: RunConfig, model: nn.Module, num_classes: int, baseline_bytes: int
) -> tuple[RunConfig, Plan]:
    """Probe the model's settings in a fresh process and return `config` with the fastest
    setting predicted to fit its budget (micro-batch, checkpointing, precision) and the plan."""
    probes, single_ok = probe_in_subprocess(config, num_classes, (config.precision,))
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    plan = make_plan(
        probes,
        budget_bytes=int(config.memory_budget_mb * MB),
        baseline_bytes=baseline_bytes,
        batch_size=config.batch_size,
        fixed_bytes=fixed_training_bytes(
            trainable, config.optimizer, config.momentum, ema_bytes=_ema_bytes(config, model)
        ),
        min_micro_batch=1 if single_ok else 2,
    )
    c = plan.chosen
    asked = ("micro_batch", "checkpointing", "precision")
    plan = dataclasses.replace(plan, requested={k: getattr(config, k) for k in asked})
    config = config.replace(
        micro_batch=c.micro_batch if c.micro_batch < config.batch_size else None,
        checkpointing=c.checkpointing or config.checkpointing,
        precision=c.precision,
    )
    return config, plan


def _ema_bytes(config: RunConfig, model: nn.Module) -> int:
    """The weight EMA's copy: every floating-point tensor of the model's state."""
    if not config.ema_decay:
        return 0
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def check_budget(state: RunState, epoch: int, step: int) -> None:
    """Raise MemoryBudgetExceeded (after saving stopped.pt) if RSS crossed the budget."""
    if not state.config.memory_budget_mb:
        return
    budget = int(state.config.memory_budget_mb * MB)
    rss = max(state.sampler.last_bytes, peak_rss_bytes() if state.hwm_ok else 0)
    rss = state.accel.used_bytes(rss)  # on a GPU: the allocator's peak
    if rss <= budget:
        return
    state.run.save_state(
        {
            "model": plain_state_dict(state.model),
            "optimizer": state.optimizer.state_dict(),
            "epoch": epoch,
            "step": step + 1,
        },
        which="stopped",
    )
    run = state.run
    last = (
        f"{run.checkpoint} holds the last finished epoch ({state.history[-1]['epoch']}); "
        if state.history
        else ""
    )
    raise MemoryBudgetExceeded(
        f"memory budget exceeded: {'RSS' if state.accel.kind == 'cpu' else 'device memory'} "
        f"reached {rss / MB:.0f} MB of a {budget / MB:.0f} MB budget "
        f"at epoch {epoch + 1}, step {step + 1}; training stopped. {last}the state at the stop "
        f"is in {run.stopped}. The settings in {run.config} needed more than that: give a "
        "larger budget, or a smaller --micro-batch / --checkpointing."
    )
