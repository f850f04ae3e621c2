"""BatchNorm recalibration: re-estimate running statistics before an evaluation.

Why: BatchNorm normalises with batch statistics in training and with its running averages in
evaluation. Keras' rates (0.001 for MobileNetV2: each step moves the average by 0.1 %) leave those
averages far from the trained weights' real statistics after a few thousand steps, and a model that
trains to 96 % can then evaluate at chance. One pass over a fixed sample of training images with
momentum None (an exact mean over the sample) and no gradient gives statistics that belong to the
weights being evaluated. Setting `bn_recalibration_images = 0` keeps the paper's behaviour.

The sample is fixed and seeded (the same images before every evaluation of a run) and never
augmented; BatchNorm layers that the train scope froze keep their statistics. Dropout and other
layers run in evaluation mode during the pass; nothing else of the model changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from edgetrain.data.loader import normalize
from edgetrain.train.accelerator import Accelerator

_BN = nn.modules.batchnorm._BatchNorm


def recalibrated_layers(model: nn.Module, frozen: list[nn.Module]) -> list[_BN]:
    """The BatchNorm layers whose statistics training updates (not inside a frozen module)."""
    held = {id(m) for f in frozen for m in f.modules()}
    return [m for m in model.modules() if isinstance(m, _BN) and id(m) not in held]


@dataclass(frozen=True)
class CalibrationSample:
    """Training images picked by index (no copy: the sample costs no memory of its own),
    yielded in batches like a loader's, normalised, never augmented."""

    images: torch.Tensor  # the decoded training split, uint8 (N, 3, R, R)
    index: torch.Tensor  # int64 (count,), sorted
    batch_size: int
    channels_last: bool

    def __len__(self) -> int:
        return len(self.index)

    def epoch(self, _epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # a last batch of one image cannot give BatchNorm a variance: it joins the one before
        starts = list(range(0, len(self.index), self.batch_size))
        if len(starts) > 1 and len(self.index) - starts[-1] == 1:
            starts.pop()
        for i, s in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else len(self.index)
            x = normalize(self.images[self.index[s:end]])
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, torch.zeros(len(x), dtype=torch.int64)


def calibration_loader(
    images: torch.Tensor, labels: torch.Tensor, *, count: int, batch_size: int, seed: int,
    channels_last: bool,
) -> CalibrationSample | None:  # fmt: skip
    """A fixed, seeded sample of `count` training images (all when fewer), in batches of the
    run's batch size; None when `count` is 0 (recalibration off) or fewer than 2 images."""
    if count <= 0 or len(labels) < 2:
        return None
    g = torch.Generator().manual_seed(int(seed) ^ 0x5EED_BA7C)
    pick = torch.randperm(len(labels), generator=g)[:count].sort().values
    return CalibrationSample(images, pick, batch_size, channels_last)


@torch.no_grad()
def recalibrate(
    model: nn.Module, loader: CalibrationSample, frozen: list[nn.Module], accel: Accelerator
) -> int:
    """Replace the running statistics of every trainable BatchNorm with their exact mean over
    `loader`'s images; returns how many layers were recalibrated. Training flags and BatchNorm
    momenta are restored after."""
    layers = recalibrated_layers(model, frozen)
    if not layers:
        return 0
    with _calibration_mode(model, layers), accel.autocast():
        for x, y in loader.epoch(0):
            model(accel.batch(x, y)[0])
    return len(layers)


@contextmanager
def _calibration_mode(model: nn.Module, layers: list[_BN]) -> Iterator[None]:
    modes = [(m, m.training) for m in model.modules()]
    momenta = [m.momentum for m in layers]
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every sample image weighs the same
        m.train()
    try:
        yield
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
        for m, training in modes:
            m.training = training


def snapshot(layers: list[_BN]) -> list[dict[str, torch.Tensor]]:
    """A copy of the layers' running statistics (to put the as-trained ones back after)."""
    return [{k: b.clone() for k, b in m.named_buffers(recurse=False)} for m in layers]


@torch.no_grad()
def restore(layers: list[_BN], saved: list[dict[str, torch.Tensor]]) -> None:
    for m, buffers in zip(layers, saved, strict=True):
        for k, b in m.named_buffers(recurse=False):
            b.copy_(buffers[k])
