"""Static facts about a model: parameter counts, BatchNorm statistics, MACs, activation sizes.

MACs come from `torch.utils.flop_counter.FlopCounterMode` (forward pass only: it over-counts the
backward of grouped convolutions, so training cost is derived as ~3x forward, not counted).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgetrain.models.registry import create_model

MB = 2**20  # bytes in one "MB" throughout edgetrain (a mebibyte)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable parameters, BatchNorm running_mean + running_var elements).

    The pair equals Keras' (trainable, non-trainable) split of `count_params()` for our models.
    `num_batches_tracked` is a PyTorch-only counter and is not counted.
    """
    trainable = sum(p.numel() for p in model.parameters())
    bn_stats = sum(
        b.numel()
        for name, b in model.named_buffers()
        if name.endswith(("running_mean", "running_var"))
    )
    return trainable, bn_stats


def count_macs(model: nn.Module, resolution: int, batch_size: int = 1) -> int:
    """Multiply-accumulates of one forward pass at `resolution` (eval mode, batch `batch_size`)."""
    was_training = model.training
    model.eval()
    x = torch.zeros(batch_size, 3, resolution, resolution)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def count_activation_elements(model: nn.Module, resolution: int) -> int:
    """Elements of every leaf module's output in one forward pass at batch 1.

    A size-of-the-feature-maps measure: what training keeps for backward is of this order
    (in-place ops and fused saves make the real figure differ; `edgetrain.measure` counts that).
    """
    total = 0

    def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, resolution, resolution))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


@dataclass(frozen=True)
class ModelProfile:
    name: str
    resolution: int
    num_classes: int
    params_trainable: int
    bn_stats: int
    macs: int
    activation_elements: int
    weights_mb: float  # fp32 parameters + BN statistics

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def profile_model(name: str, *, resolution: int = 224, num_classes: int = 101) -> ModelProfile:
    """Build the registered model `name` and measure its static costs at `resolution`."""
    model = create_model(name, num_classes=num_classes)
    trainable, bn_stats = count_params(model)
    return ModelProfile(
        name=name,
        resolution=resolution,
        num_classes=num_classes,
        params_trainable=trainable,
        bn_stats=bn_stats,
        macs=count_macs(model, resolution),
        activation_elements=count_activation_elements(model, resolution),
        weights_mb=(trainable + bn_stats) * 4 / MB,
    )
