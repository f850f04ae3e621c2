"""Probing a model's training memory and time: one real forward + backward per setting.

For each (activation checkpointing, precision) setting, a step at two micro-batch sizes measures
the bytes saved for backward (under `saved_tensors_hooks`), the largest backbone block's own
saved bytes (what checkpointing recomputes at once in backward) and the step time. The planner
(`planner.py`) fits a + b*m to each and predicts every candidate's peak and step time.

Probes run in a fresh Python process (`probe_in_subprocess`, whose entry point is
`probe_child.py`), so the memory they touch never stays in the training process; the model is
built there by `setup.build_model`, the very function the engine uses.
"""

from __future__ import annotations

import copy
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgetrain.errors import EdgeTrainError
from edgetrain.measure import SavedTensorsCounter, StorageSet
from edgetrain.measure.timing import synchronize
from edgetrain.train.accelerator import autocast_context
from edgetrain.train.config import RunConfig
from edgetrain.train.modes import enable_checkpointing

# --- probing one setting ------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """Measured at two micro-batch sizes for one (checkpointing, precision) setting."""

    checkpointing: bool
    precision: str
    sizes: tuple[int, int]  # the micro-batch sizes probed: (1, 2), or (2, 4) where 1 cannot train
    saved_bytes: tuple[int, int]  # saved for backward at those sizes
    block_bytes: tuple[int, int]  # the largest backbone block's own saved bytes
    step_s: tuple[float, float]  # forward + backward time

    def saved_at(self, m: int) -> float:
        return self._linear(self.saved_bytes, m)

    def block_at(self, m: int) -> float:
        return self._linear(self.block_bytes, m)

    def step_s_at(self, m: int) -> float:
        return self._linear(self.step_s, m)

    def _linear(self, at: tuple[float, float], m: int) -> float:
        (m1, m2), (v1, v2) = self.sizes, at
        slope = max((v2 - v1) / (m2 - m1), 0.0)
        return max(v1 - slope * m1, 0.0) + slope * m


class _BlockSaved:
    """Saved-for-backward bytes attributed to the backbone block that was running."""

    def __init__(self, model: nn.Module) -> None:
        self.current: str | None = None
        self.per_block: dict[str, StorageSet] = {}
        self._params = StorageSet([*model.parameters(), *model.buffers()])
        self._handles = []
        for name, block in model.backbone.named_children():
            self._handles.append(block.register_forward_pre_hook(self._enter(name)))
            self._handles.append(block.register_forward_hook(self._leave))

    def _enter(self, name: str):
        def hook(*_: Any) -> None:
            self.current = name

        return hook

    def _leave(self, *_: Any) -> None:
        self.current = None

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        if self.current is not None and t not in self._params:
            self.per_block.setdefault(self.current, StorageSet()).add(t)
        return t

    def largest(self) -> int:
        return max((s.nbytes for s in self.per_block.values()), default=0)

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def _probe(
    base: nn.Module,
    *,
    checkpointing: bool,
    precision: str,
    channels_last: bool,
    x: torch.Tensor,
    y: torch.Tensor,
    sizes: tuple[int, int],
    repeat: int = 3,
) -> Probe:
    # on a GPU, x, y and `base` are already there: the bytes counted are device memory
    device_type = x.device.type
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    saved, blocks, times = [], [], []
    for m in sizes:
        model = copy.deepcopy(base)
        if checkpointing:
            enable_checkpointing(model)
        model = model.to(memory_format=fmt).train()
        xs, ys = x[:m].to(memory_format=fmt), y[:m]
        # what one training step saves for backward, with the mode on
        counter = SavedTensorsCounter(exclude=model)
        with counter, autocast_context(precision, device_type):
            loss = F.cross_entropy(model(xs).float(), ys)
        loss.backward()
        saved.append(counter.saved_bytes)
        del loss
        # the largest block's own activations: recomputed at once in backward when checkpointing
        plain = copy.deepcopy(base).to(memory_format=fmt).train()
        attribution = _BlockSaved(plain)
        hooks = torch.autograd.graph.saved_tensors_hooks(attribution.pack, lambda t: t)
        with hooks, autocast_context(precision, device_type):
            out = plain(xs)
        attribution.close()
        blocks.append(attribution.largest())
        del out, plain
        ts = []
        for _ in range(repeat + 2):  # the first calls warm up the kernels and the allocator
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            with autocast_context(precision, device_type):
                loss = F.cross_entropy(model(xs).float(), ys)
            loss.backward()
            synchronize(x.device)
            ts.append(time.perf_counter() - t0)
        times.append(statistics.median(ts[2:]))
        del model, loss
    return Probe(
        checkpointing,
        precision,
        sizes,
        (saved[0], saved[1]),
        (blocks[0], blocks[1]),
        (times[0], times[1]),
    )


def probe_settings(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    channels_last: bool,
    precisions: tuple[str, ...],
    allow_checkpointing: bool = True,
) -> list[Probe]:
    """Probe every (checkpointing, precision) setting on `model` with images x (>= 4) and labels y.

    Micro-batches of 2 and 4 are probed (timings at 1 image are mostly fixed overheads); where
    a micro-batch of 1 cannot train (a BatchNorm over a 1x1 feature map sees one value per
    channel) the plan leaves it out.
    """
    if len(x) < 4:
        raise EdgeTrainError("the memory planner needs at least 4 training images")
    return [
        _probe(
            model,
            checkpointing=ck,
            precision=pr,
            channels_last=channels_last,
            x=x,
            y=y,
            sizes=(2, 4),
        )
        for pr in precisions
        for ck in ((False, True) if allow_checkpointing else (False,))
    ]


def can_train_single_image(model: nn.Module, x: torch.Tensor) -> bool:
    try:
        with torch.no_grad():
            copy.deepcopy(model).train()(x[:1])
    except ValueError:
        return False
    return True


# --- in a fresh process ---------------------------------------------------------------------


def probe_in_subprocess(
    config: RunConfig, num_classes: int, precisions: tuple[str, ...]
) -> tuple[list[Probe], bool]:
    """Probe `config`'s model (built by `setup.build_model`) in a fresh Python process, so the
    memory the probes touch never stays in the training process (freed heap is not always
    returned to the OS). Returns the probes and whether a micro-batch of 1 can train."""
    out = probe_facts(config, num_classes, precisions)
    return out["probes"], out["single_image_ok"]


def probe_facts(config: RunConfig, num_classes: int, precisions: tuple[str, ...]) -> dict[str, Any]:
    """What the probe process measured: `probes`, `single_image_ok`, and the model's facts
    (`params`, `trainable_bytes`, `macs`, `model_rss_bytes`: the probe process's RSS with
    the runtime loaded and the model built, before any step)."""
    request = {"config": config.to_dict(), "num_classes": num_classes, "precisions": precisions}
    proc = subprocess.run(
        [sys.executable, "-m", "edgetrain.train.probe_child", json.dumps(request)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise EdgeTrainError("the memory planner's probe failed: " + " | ".join(tail))
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["probes"] = [
        Probe(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        for d in out["probes"]
    ]
    out["single_image_ok"] = bool(out["single_image_ok"])
    return out
