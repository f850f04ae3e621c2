"""One optimizer step and one evaluation pass: the compute of a run, apart from its bookkeeping."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import edgetrain.train.metrics as metrics
from edgetrain.data import BatchLoader
from edgetrain.errors import EdgeTrainError
from edgetrain.measure import SavedTensorsCounter
from edgetrain.train.accelerator import Accelerator, fused_adam_ok
from edgetrain.train.config import RunConfig


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    micro_batch: int,
    accel: Accelerator,
    counter: SavedTensorsCounter | None = None,
    label_smoothing: float = 0.0,
) -> tuple[float, int]:
    """One optimizer step on batch (x, y) -> (mean loss, correct predictions).

    The batch runs in micro-batches of `micro_batch` images whose gradients accumulate; the loss
    is the mean over the whole batch, as without micro-batching. `counter`, if given, counts what
    the first micro-batch saves for backward (only one micro-batch's graph is alive at a time).
    `label_smoothing` spreads that share of each target evenly over all classes (the loss
    returned is the smoothed one, the loss that is optimised).
    """
    optimizer.zero_grad(set_to_none=True)
    total_loss, n_correct, batch = 0.0, 0, len(y)
    for i, (xs, ys) in enumerate(zip(x.split(micro_batch), y.split(micro_batch), strict=True)):
        counting = counter if counter is not None and i == 0 else contextlib.nullcontext()
        with counting:
            with accel.autocast():
                logits = model(xs)
            # loss on logits in fp32; sum / full batch so accumulated grads equal the batch mean
            loss = (
                F.cross_entropy(
                    logits.float(), ys, reduction="sum", label_smoothing=label_smoothing
                )
                / batch
            )
        accel.backward(loss)  # scaled on a GPU in fp16
        total_loss += float(loss.detach()) * batch
        n_correct += int((logits.argmax(1) == ys).sum())
    accel.step(optimizer)
    return total_loss / batch, n_correct


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: BatchLoader | None, num_classes: int, accel: Accelerator
) -> dict[str, Any] | None:
    """Loss, accuracy, macro-F1, per-class accuracy and confusion matrix of `model` in eval mode
    over `loader`; None for a missing or empty split. Training flags are restored after."""
    if loader is None or len(loader) == 0:
        return None
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    preds, targets, loss_sum = [], [], 0.0
    try:
        with accel.autocast():
            for x, y in loader.epoch(0):
                x, y = accel.batch(x, y)
                logits = model(x).float()
                loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
                preds.append(logits.argmax(1).cpu())
                targets.append(y.cpu())
    finally:
        for m, training in modes:
            m.training = training
    p, t = torch.cat(preds), torch.cat(targets)
    cm = metrics.confusion_matrix(t, p, num_classes)
    return {
        "loss": loss_sum / len(t),
        "accuracy": metrics.accuracy(cm),
        "macro_f1": metrics.macro_f1(cm),
        "per_class_accuracy": metrics.per_class_accuracy(cm),
        "confusion": cm.tolist(),
    }


def make_optimizer(params: list[nn.Parameter], config: RunConfig) -> torch.optim.Optimizer:
    if not params:
        raise EdgeTrainError("nothing to train: the train scope froze every parameter")
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    # fused: one kernel over all parameters instead of ~10 small ops per tensor (PyTorch leaves
    # CPU tensors on that per-tensor loop by default). Same update, measured at 1 thread with
    # benchmarks/optimizer_step.py: 19 ms instead of 81 ms of CPU per step for xception_lite's
    # 188 tensors (0.24x). A resumed run keeps the implementation its checkpoint
    # names: load_state_dict restores the param group's `fused` flag.
    return torch.optim.Adam(
        params, lr=config.lr, weight_decay=config.weight_decay, fused=_fusable(params)
    )


def _fusable(params: list[nn.Parameter]) -> bool | None:
    """True where PyTorch has a fused Adam for every parameter (floating point, on a device
    kind the accelerator table says has the kernel)."""
    ok = all(p.is_floating_point() and fused_adam_ok(p.device.type) for p in params)
    return True if ok else None
