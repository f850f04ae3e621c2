"""Where training computes, and in which precision: the seam a GPU plugs into.

The engine never names a device or a dtype itself; it asks the `Accelerator` to place the model
and each batch, to open the precision context, and to wait for queued work before a timer reads.
Two implementations: the CPU (`Accelerator`) and a CUDA GPU (`CudaAccelerator`: pinned host
memory and non-blocking copies in `batch`, `torch.cuda.synchronize` in `synchronize`, the
caching allocator's peaks in `memory_mb`, gradient scaling for fp16 in `backward` / `step`);
the loop is the same for both. `resolve_accelerator` picks one from `--accelerator`.

This module is the one place that knows the device kinds: `_KINDS` is the table (a new kind is
one class and one row), and everything else asks it (the `--accelerator` grammar, which
precision "auto" may pick without measuring, whether PyTorch has a fused Adam there).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from edgetrain.errors import EdgeTrainError
from edgetrain.threads import bound_threads

PRECISIONS = ("fp32", "bf16", "fp16")


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
    """Refuse more torch threads than CPUs this process may use (`edgetrain.threads`, the one
    rule: an oversubscribed run can be 80x slower, or never finish an epoch); return a warning
    above the physical cores."""
    if bound_threads(threads) is None:
        return None
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
    """The CPU with a precision policy; `CudaAccelerator` is the same contract on a GPU."""

    kind: str = "cpu"
    precision: str = "fp32"  # fp32 | bf16 (autocast; losses and optimizer state stay fp32)
    channels_last: bool = True  # NHWC activations: faster on CPU, same numbers

    indexed: ClassVar[bool] = False  # "cuda:N" names one of several devices; the CPU is one
    fused_adam: ClassVar[bool] = True  # PyTorch has a fused Adam kernel for this kind

    @classmethod
    def is_available(cls) -> bool:
        return True

    @classmethod
    def auto_precision(cls, index: int) -> tuple[str, str] | None:
        """What precision "auto" picks here without measuring, and why; None when only timing
        a step can tell (a CPU with native bf16: it pays for some models and not others)."""
        if cpu_supports_bf16():
            return None
        return "fp32", "auto: the CPU has no native bf16 (fp32)"

    @property
    def name(self) -> str:
        return self.kind

    @property
    def device(self) -> torch.device:
        return torch.device(self.name)

    def place_model(self, model: nn.Module) -> nn.Module:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return model.to(device=self.device, memory_format=fmt)

    def batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Move one batch to the device (a no-op on the CPU, where the loader made it)."""
        return x.to(self.device), y.to(self.device)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast_context(self.precision, self.kind)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.step()

    def synchronize(self) -> None:
        """Wait for queued work (asynchronous devices), so a timer measures the work itself."""

    def reset_peaks(self) -> None:
        """Start a new window for `memory_mb`'s peaks (once per epoch)."""

    def memory_mb(self) -> dict[str, float]:
        """Device memory figures beyond process RSS (none on the CPU: RSS is everything)."""
        return {}

    def used_bytes(self, rss_bytes: int) -> int:
        """What a memory budget is compared with: the process RSS on the CPU."""
        return rss_bytes

    def planning_baseline_bytes(self, model: nn.Module, rss_bytes: int) -> int:
        """What training starts from, for the planner: the process RSS on the CPU."""
        return rss_bytes

    def state_dict(self) -> dict[str, Any]:
        """Device state a checkpoint needs for an exact resume (none on the CPU)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`; state from another kind of device is left out."""

    def describe(self) -> dict[str, Any]:
        """What the record says about where training ran."""
        return {"accelerator": self.name, "device_name": _cpu_name(), "unified_memory": None}


@dataclass(frozen=True)
class CudaAccelerator(Accelerator):
    """A CUDA GPU: pinned host memory and non-blocking copies, device synchronisation before a
    timer reads, the caching allocator's peaks per epoch, fp16 with gradient scaling."""

    kind: str = "cuda"
    index: int = 0
    scaler: Any = field(default=None, compare=False)  # torch.amp.GradScaler for fp16
    unified: bool = False  # the GPU shares the CPU's RAM (Jetson)

    indexed: ClassVar[bool] = True

    @classmethod
    def is_available(cls) -> bool:
        return torch.cuda.is_available()

    @classmethod
    def auto_precision(cls, index: int) -> tuple[str, str] | None:
        if torch.cuda.is_bf16_supported():
            return "bf16", "auto: the GPU computes bf16 natively"
        name = torch.cuda.get_device_name(index)
        return "fp16", f"auto: {name} has no bf16; fp16 with scaling"

    @property
    def name(self) -> str:
        return f"cuda:{self.index}"

    def batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # from pinned (page-locked) memory the copy runs asynchronously with the step
        return (
            x.pin_memory().to(self.device, non_blocking=True),
            y.pin_memory().to(self.device, non_blocking=True),
        )

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)  # skipped when the scaled gradients overflowed
        self.scaler.update()

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def reset_peaks(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)

    def memory_mb(self) -> dict[str, float]:
        mb = 2**20
        out = {
            "gpu_peak_allocated_mb": torch.cuda.max_memory_allocated(self.device) / mb,
            "gpu_peak_reserved_mb": torch.cuda.max_memory_reserved(self.device) / mb,
        }
        held = _nvml_process_bytes(self.index)
        if held is not None:
            out["gpu_process_mb"] = held / mb
        return out

    def used_bytes(self, rss_bytes: int) -> int:
        # on a GPU the budget is device memory: the allocator's peak of this epoch; on a
        # unified-memory board RAM holds both, so the process RSS counts too
        peak = int(torch.cuda.max_memory_allocated(self.device))
        return peak + rss_bytes if self.unified else peak

    def planning_baseline_bytes(self, model: nn.Module, rss_bytes: int) -> int:
        # on the device, before the first step, training holds the weights and buffers
        tensors = [*model.parameters(), *model.buffers()]
        weights = sum(t.numel() * t.element_size() for t in tensors)
        return weights + rss_bytes if self.unified else weights

    def state_dict(self) -> dict[str, Any]:
        # dropout on the GPU draws from the CUDA generator; fp16's loss scale evolves per step
        state: dict[str, Any] = {"kind": "cuda", "rng": torch.cuda.get_rng_state(self.device)}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "cuda":
            return
        torch.cuda.set_rng_state(state["rng"], self.device)
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])

    def describe(self) -> dict[str, Any]:
        return {
            "accelerator": self.name,
            "device_name": torch.cuda.get_device_name(self.index),
            # Jetson: CPU and GPU share one RAM, so RSS and device allocations add up
            "unified_memory": self.unified,
        }


def _nvml_process_bytes(index: int) -> int | None:
    """Device memory this process holds (NVML, when pynvml is installed), else None."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except Exception:  # no pynvml, no driver access (Jetson has no NVML): leave it out
        return None
    used = [p.usedGpuMemory for p in procs if p.pid == os.getpid() and p.usedGpuMemory]
    return int(sum(used)) if used else None


def _cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def autocast_context(precision: str, device_type: str = "cpu") -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device_type, dtype=torch.float16)
    return contextlib.nullcontext()


def accelerator_class(kind: str) -> type[Accelerator]:
    """The class of a device kind ("cpu", "cuda")."""
    return _KINDS[kind]


def fused_adam_ok(kind: str) -> bool:
    """True where PyTorch has a fused Adam kernel for tensors on this kind of device."""
    return kind in _KINDS and _KINDS[kind].fused_adam


def check_accelerator_syntax(text: str) -> tuple[str, int | None]:
    """ "auto" | a kind | "KIND:N" for an indexed kind -> (kind or "auto", N or None); the
    grammar alone, without asking which devices are present."""
    kind, sep, index = text.partition(":")
    ok = text == "auto" or (
        kind in _KINDS
        and (
            not sep
            or (_KINDS[kind].indexed and index.isascii() and index.isdigit() and len(index) <= 3)
        )
    )
    if not ok:
        raise EdgeTrainError(f"accelerator must be {_GRAMMAR}, got {text!r}")
    return kind, int(index) if sep else None


def parse_accelerator(text: str) -> tuple[str, int]:
    """ "auto" | "cpu" | "cuda" | "cuda:N" -> (kind, index), auto resolved here: the first
    kind of the table that PyTorch sees (a GPU before the CPU)."""
    kind, index = check_accelerator_syntax(text)
    if kind == "auto":
        kind = next(k for k, cls in _KINDS.items() if cls.is_available())
    return kind, index or 0


def resolve_accelerator(
    *, precision: str, channels_last: bool, accelerator: str = "cpu"
) -> Accelerator:
    """The accelerator a run uses; refuses a device that is not there and a precision the
    device cannot run (well), each with one line saying what to use instead."""
    if precision not in PRECISIONS:
        raise EdgeTrainError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    kind, index = parse_accelerator(accelerator)
    if kind == "cuda":
        return _resolve_cuda(index, precision, channels_last)
    if precision == "fp16":
        raise EdgeTrainError(
            "fp16 with gradient scaling runs on CUDA GPUs only; on the CPU use --precision fp32 "
            "(or bf16 where the CPU has it natively)"
        )
    if precision == "bf16" and not cpu_supports_bf16():
        raise EdgeTrainError(
            "this CPU has no native bf16 (avx512_bf16 or amx_bf16); emulated bf16 is slower "
            "than fp32. Use --precision fp32."
        )
    return Accelerator("cpu", precision, channels_last)


def _resolve_cuda(index: int, precision: str, channels_last: bool) -> CudaAccelerator:
    if not torch.cuda.is_available():
        build = (
            "a CPU-only build"
            if torch.version.cuda is None
            else f"built for CUDA {torch.version.cuda}"
        )
        raise EdgeTrainError(
            f"--accelerator cuda: PyTorch sees no CUDA GPU here (torch {torch.__version__}, "
            f"{build}); use --accelerator cpu"
        )
    count = torch.cuda.device_count()
    if index >= count:
        raise EdgeTrainError(
            f"--accelerator cuda:{index}: this machine has {count} GPU(s), 0..{count - 1}"
        )
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        name = torch.cuda.get_device_name(index)
        raise EdgeTrainError(
            f"{name} has no bf16 (Volta and older: Jetson Xavier); use --precision fp16 "
            "(autocast with gradient scaling) or fp32"
        )
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    unified = bool(getattr(torch.cuda.get_device_properties(index), "is_integrated", False))
    return CudaAccelerator("cuda", precision, channels_last, index, scaler, unified)


# the device kinds, in the order "auto" tries them; the CPU, always available, last
_KINDS: dict[str, type[Accelerator]] = {"cuda": CudaAccelerator, "cpu": Accelerator}
ACCELERATOR_KINDS = tuple(_KINDS)
_GRAMMAR = "auto, " + ", ".join(
    f"{k} or {k}:N" if c.indexed else k for k, c in reversed(_KINDS.items())
)
