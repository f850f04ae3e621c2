"""A run within a memory budget: the device profile's defaults, the plan made before training,
and the guard that stops training (with a checkpoint) if the process crosses the budget."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from edgetrain.errors import EdgeTrainError
from edgetrain.measure import MB, current_rss_bytes, peak_rss_bytes
from edgetrain.models.estimate import SavedSize, memory_limit, model_size, saved_for_backward
from edgetrain.models.found import run_spec
from edgetrain.models.registry import meta_model
from edgetrain.train.config import RunConfig
from edgetrain.train.devices import load_device
from edgetrain.train.modes import plain_state_dict
from edgetrain.train.planner import Plan, fixed_training_bytes, make_plan
from edgetrain.train.probe import Probe, probe_in_subprocess
from edgetrain.train.state import RunState


class MemoryBudgetExceeded(EdgeTrainError):
    """The process RSS crossed the run's memory budget; training stopped with a checkpoint."""


def apply_device_profile(config: RunConfig) -> RunConfig:
    """A device profile fills in the threads and the memory budget the user did not give. With
    the budget settled, a model that cannot fit it is refused here (`check_model_fits`), before
    the data is read and before anything is built."""
    config = _with_device_profile(config)
    check_model_fits(config)
    return config


def _with_device_profile(config: RunConfig) -> RunConfig:
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


def check_model_fits(config: RunConfig) -> None:
    """Refuse, from the spec alone (a meta-device build and forward, no storage), a model that
    cannot train within the run's budget or, without one, the memory this process can have.

    Within a budget it is the planner's own verdict (`make_plan`) on probes sized from the spec:
    one image saves for backward what the meta forward counts (in bf16, half, where the precision
    may be bf16), a checkpointed one at least its largest block, and the baseline is at least what
    the process holds now plus the weights. So what is refused here the planner would refuse
    once the model is built and the data read. Without a budget nothing is planned: the batch
    trains as asked, and that is what must fit.
    """
    spec = run_spec(config.model, config.model_args)
    if spec is None:  # a factory model: its architecture is known only once it is built
        return
    model = meta_model(spec, num_classes=1)  # the data, so the head's size, is not read yet
    size = model_size(model)
    saved = saved_for_backward(model, config.resolution)
    trainable = size.params_bytes if config.train_scope == "all" else 0
    ema = size.weights_bytes if config.ema_decay else 0
    fixed = fixed_training_bytes(trainable, config.optimizer, config.momentum, ema_bytes=ema)
    gpu = _on_gpu(config)  # a budget is then device memory, where the runtime is not
    held = size.weights_bytes + (0 if gpu else _runtime_bytes())
    try:
        if config.memory_budget_mb:
            _plan_from_spec(config, saved, fixed, held)
        elif not gpu:  # a GPU refuses what it cannot hold by itself, and the host stays up
            _check_unplanned(config, saved, fixed, held)
    except EdgeTrainError as exc:
        raise EdgeTrainError(
            f"model {config.model} ({size.params:,} parameters), sized from its spec before "
            f"anything is built: {exc}"
        ) from None


def _plan_from_spec(config: RunConfig, saved: SavedSize, fixed: int, held: int) -> None:
    half = 0.5 if config.precision != "fp32" else 1.0  # bf16 / fp16 keep 2 bytes an element
    total, block = int(saved.total_bytes * half), int(saved.largest_block_bytes * half)
    probes = [
        Probe(False, config.precision, (1, 2), (total, 2 * total), (block, 2 * block), (1.0, 2.0)),
        Probe(True, config.precision, (1, 2), (0, 0), (block, 2 * block), (1.3, 2.6)),
    ]
    make_plan(
        probes,
        budget_bytes=int(config.memory_budget_mb * MB),
        baseline_bytes=held,
        batch_size=config.batch_size,
        fixed_bytes=fixed,
        baseline_is="runtime and weights, before the data",
    )


def _check_unplanned(config: RunConfig, saved: SavedSize, fixed: int, held: int) -> None:
    """Without a planner the batch (or --micro-batch) trains as asked; precision auto first
    times fp32 steps of it."""
    images = config.micro_batch or config.batch_size
    per_image = saved.largest_block_bytes if config.checkpointing else saved.total_bytes
    element = 1.0 if config.precision in ("auto", "fp32") else 0.5
    need = held + fixed + images * per_image * element
    limit, what = memory_limit()
    if need > limit:
        raise EdgeTrainError(
            f"a batch of {images} at {config.resolution} px needs at least {need / MB:,.0f} MB "
            f"(weights, gradients, optimizer state and {images * per_image * element / MB:,.0f} "
            f"MB saved for backward), more than the {limit / MB:,.0f} MB of {what}; give "
            "--memory-budget so that the planner may split the batch, or use a smaller model, "
            "resolution or batch"
        )


def _on_gpu(config: RunConfig) -> bool:
    if config.accelerator == "auto":
        return torch.cuda.is_available()
    return config.accelerator != "cpu"


def _runtime_bytes() -> int:
    try:
        return current_rss_bytes()
    except EdgeTrainError:  # no /proc: count nothing rather than guess
        return 0


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
