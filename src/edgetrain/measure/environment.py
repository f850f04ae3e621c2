"""What a measurement ran on: software versions, threads, CPU, RAM. No hostname or user names:
records get shared."""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np
import torch

from edgetrain.measure.memory import cgroup_memory_limit_bytes, machine_ram_bytes
from edgetrain.measure.units import MB

# CPU features that decide which kernels PyTorch can use: AVX2 / AVX-512 for fp32, AVX512-BF16
# and AMX for bf16 (x86); ASIMD (NEON) and BF16 on the ARM boards edge devices use.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "asimd", "bf16")


def _cpuinfo() -> tuple[str, set[str]]:
    """CPU model name and feature flags of the first CPU in /proc/cpuinfo ('', {} elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return platform.processor(), set()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    # x86: "model name" / "flags"; ARM: "Features", and a model in "model name", "Model" (Raspberry
    # Pi) or "Hardware" (Jetson), depending on the kernel.
    model = next(
        (fields[k] for k in ("model name", "Model", "Hardware", "cpu model") if fields.get(k)),
        platform.processor(),
    )
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return model, flags


def environment() -> dict[str, Any]:
    """A flat, JSON-able description of the software and hardware a measurement ran on: Python,
    PyTorch and NumPy versions, PyTorch's intra- and inter-op threads and CPU kernel level, the
    CPU model and the flags in `CPU_FLAGS` (True/False each), logical cores (`cpu_count`) and the
    cores this process may run on (`cpu_affinity`), machine RAM and any cgroup memory limit."""
    model, flags = _cpuinfo()
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = None
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # older torch
        capability = None
    ram = machine_ram_bytes()
    limit = cgroup_memory_limit_bytes()
    return {
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch_cpu_capability": capability,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": model,
        **{f"cpu_{flag}": flag in flags for flag in CPU_FLAGS},
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "machine_ram_bytes": ram,
        "machine_ram_mb": ram / MB,
        "cgroup_memory_limit_mb": None if limit is None else limit / MB,
    }


def describe_cpu() -> str:
    """One line naming the CPU for a benchmark's table: model name, cores this process may use,
    and whether it has native bf16 (avx512_bf16, amx_bf16), e.g.
    "AMD EPYC, 2 cores, avx512_bf16 yes, amx_bf16 no"."""
    model, flags = _cpuinfo()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    bf16 = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ("avx512_bf16", "amx_bf16"))
    return f"{model or 'unknown CPU'}, {cores} cores, {bf16}"
