"""What a model costs before it is built: its parameters, buffers and the activations it saves
for backward, from a build and a forward pass on PyTorch's meta device (every module and shape, no
storage, no initialisation), and the most memory this process can have at all.

A spec is refused from these numbers before a byte of it is allocated: `registry.build_model`
refuses one whose weights and gradients exceed `memory_limit()`, and the training run refuses one
that cannot fit its budget (`edgetrain.train.budget.check_model_fits`).
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from edgetrain.errors import EdgeTrainError
from edgetrain.measure.analytic import StorageSet
from edgetrain.measure.memory import cgroup_memory_limit_bytes, machine_ram_bytes
from edgetrain.measure.units import MB

FP32 = 4  # bytes per element of fp32 weights, gradients and activations
_M = TypeVar("_M", bound=nn.Module)


@dataclass(frozen=True)
class ModelSize:
    """Element counts of a model's tensors (the head included), read off a meta build."""

    params: int
    buffer_elements: int  # BatchNorm statistics and counters

    @property
    def params_bytes(self) -> int:
        return self.params * FP32

    @property
    def weights_bytes(self) -> int:
        """Parameters and buffers in fp32: what building the model allocates."""
        return (self.params + self.buffer_elements) * FP32


def on_meta(make: Callable[[], _M]) -> _M:
    """`make()` with every parameter and buffer created on the meta device. It does not draw from
    the random generator either, so a seeded build that follows gets the same weights."""
    with torch.device("meta"):
        return make()


def model_size(model: nn.Module) -> ModelSize:
    return ModelSize(
        params=sum(p.numel() for p in model.parameters()),
        buffer_elements=sum(b.numel() for b in model.buffers()),
    )


@dataclass(frozen=True)
class SavedSize:
    """What autograd saves for backward in one fp32 training step of one image (bytes)."""

    total_bytes: int  # the whole forward, without activation checkpointing
    # the most one backbone block saves: with checkpointing, backward recomputes that block and
    # holds all it saves at once, so no setting saves less per image
    largest_block_bytes: int


def saved_for_backward(model: nn.Module, resolution: int) -> SavedSize:
    """`SavedSize` of the meta-device `model` (a `Classifier`: its backbone's children are the
    blocks) per image at `resolution`, from a training-mode forward of two images on the meta
    device (BatchNorm cannot train on one image whose feature map ends at 1x1). A model that
    cannot run at that size (a feature map smaller than a kernel) is refused with one line."""
    saved = _SavedByBlock(model)
    try:
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, _unpack):
            model.train()(torch.zeros(2, 3, resolution, resolution, device="meta"))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise EdgeTrainError(f"the model cannot run on {resolution} px images ({first})") from None
    finally:
        saved.close()
    largest = max((b.nbytes for b in saved.blocks.values()), default=0)
    return SavedSize(saved.total.nbytes // 2, largest // 2)


class _SavedByBlock:
    """Saved tensors by storage (`StorageSet`), in all and per backbone block; parameters and
    buffers are weights, not activations, and are left out."""

    def __init__(self, model: nn.Module) -> None:
        self.total, self.blocks = StorageSet(), {}
        self._weights = StorageSet([*model.parameters(), *model.buffers()])
        self._alive: list[torch.Tensor] = []  # so that no storage is freed and its key reused
        self._current: str | None = None
        self._handles = []
        for name, block in model.backbone.named_children():
            self._handles.append(block.register_forward_pre_hook(self._enter(name)))
            self._handles.append(block.register_forward_hook(self._leave))

    def _enter(self, name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            self._current = name

        return hook

    def _leave(self, *_: Any) -> None:
        self._current = None

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        if t not in self._weights:
            self._alive.append(t)
            self.total.add(t)
            if self._current is not None:
                self.blocks.setdefault(self._current, StorageSet()).add(t)
        return t

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._alive.clear()


def _unpack(t: torch.Tensor) -> torch.Tensor:
    return t


def memory_limit() -> tuple[int, str]:
    """The most memory this process can have, in bytes, and what sets it: the machine's RAM, or
    less where its cgroup (a container, a systemd slice) or an address-space limit (`ulimit -v`)
    says so."""
    limits = [(machine_ram_bytes(), "this machine's RAM")]
    cgroup = cgroup_memory_limit_bytes()
    if cgroup:
        limits.append((cgroup, "this process's cgroup limit"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append((soft, "this process's address-space limit"))
    return min(limits)


def check_trainable(name: str, size: ModelSize) -> None:
    """Refuse a model whose fp32 weights and gradients, the least any training holds, exceed
    `memory_limit()`: building it would take the machine's memory before any budget is asked."""
    need = size.weights_bytes + size.params_bytes
    limit, what = memory_limit()
    if need > limit:
        raise EdgeTrainError(
            f"model {name} is too large to build here: its {size.params:,} parameters need "
            f"{need / MB:,.0f} MB as fp32 weights and gradients, more than the "
            f"{limit / MB:,.0f} MB of {what}; use fewer or narrower layers"
        )
