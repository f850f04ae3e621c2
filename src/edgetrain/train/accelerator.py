"""Where training computes, and in which precision: the seam a GPU plugs into.

The engine never names a device or a dtype itself; it asks the `Accelerator` to place the model
and each batch, to open the precision context, and to wait for queued work before a timer reads.
Today there is one implementation, the CPU. A CUDA accelerator adds the same methods (pinned host
memory and non-blocking copies in `batch`, `torch.cuda.synchronize` in `synchronize`, allocator
peaks in `memory_stats`) without the loop changing.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgetrain.errors import EdgeTrainError

PRECISIONS = ("fp32", "bf16")


def available_cpus() -> int:
    """CPUs this process may run on (affinity and cgroup cpusets included)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def physical_cores() -> int:
    """Physical cores (hyper-threads counted once), from /proc/cpuinfo; the CPU count elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return os.cpu_count() or 1
    cores, phys = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            phys = value.strip()
        elif key.strip() == "core id":
            cores.add((phys, value.strip()))
    return len(cores) or os.cpu_count() or 1


def check_threads(threads: int | None) -> str | None:
    """Refuse more torch threads than CPUs this process may use (an oversubscribed run can be
    80x slower, or never finish an epoch); return a warning above the physical cores."""
    if threads is None:
        return None
    cpus = available_cpus()
    if threads > cpus:
        raise EdgeTrainError(
            f"--threads {threads}: this process may use {cpus} CPU(s); give at most {cpus}"
        )
    cores = physical_cores()
    if threads > cores:
        return f"warning: {threads} threads on {cores} physical cores; hyper-threads rarely help"
    return None


def cpu_supports_bf16() -> bool:
    """True if the CPU computes bf16 natively (AVX512-BF16 or AMX); emulated bf16 is slower than
    fp32 and is refused."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class Accelerator:
    """A compute device with a precision policy. `kind` is "cpu" (the only one so far)."""

    kind: str = "cpu"
    precision: str = "fp32"  # fp32 | bf16 (autocast; losses and optimizer state stay fp32)
    channels_last: bool = True  # NHWC activations: faster on CPU, same numbers

    @property
    def device(self) -> torch.device:
        return torch.device(self.kind)

    def place_model(self, model: nn.Module) -> nn.Module:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return model.to(device=self.device, memory_format=fmt)

    def batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Move one batch to the device (a no-op on the CPU, where the loader made it)."""
        return x.to(self.device), y.to(self.device)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast_context(self.precision, self.kind)

    def synchronize(self) -> None:
        """Wait for queued work (asynchronous devices), so a timer measures the work itself."""


def autocast_context(precision: str, device_type: str = "cpu") -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_accelerator(*, precision: str, channels_last: bool) -> Accelerator:
    """The accelerator a run uses; refuses a precision this machine cannot run well."""
    if precision not in PRECISIONS:
        raise EdgeTrainError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "bf16" and not cpu_supports_bf16():
        raise EdgeTrainError(
            "this CPU has no native bf16 (avx512_bf16 or amx_bf16); emulated bf16 is slower "
            "than fp32. Use --precision fp32."
        )
    return Accelerator("cpu", precision, channels_last)
