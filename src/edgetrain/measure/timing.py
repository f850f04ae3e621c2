"""Wall-clock timing: a timer, repeated-call medians, per-step statistics after warm-up, and
inference latency.

Medians, not means: one slow step (a page-fault storm, another process) moves a mean but not a
median. Every summary is a flat dict with the unit in each key (`median_ms`, `p90_ms`, ...).
"""

from __future__ import annotations

import contextlib
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn


class Timer:
    """`with Timer() as t: ...` then `t.elapsed_s` / `t.elapsed_ms` (time.perf_counter)."""

    def __init__(self) -> None:
        self._start = 0.0
        self.elapsed_s = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed_s = time.perf_counter() - self._start

    @property
    def elapsed_ms(self) -> float:
        return self.elapsed_s * 1e3


def summarize_ms(samples_ms: Sequence[float]) -> dict[str, float]:
    """Median, 90th percentile (linear interpolation), mean, min, max and count of durations
    given in milliseconds."""
    if len(samples_ms) == 0:
        raise ValueError("no timings to summarize")
    a = np.asarray(samples_ms, dtype=np.float64)
    return {
        "median_ms": float(np.median(a)),
        "p90_ms": float(np.percentile(a, 90)),
        "mean_ms": float(a.mean()),
        "min_ms": float(a.min()),
        "max_ms": float(a.max()),
        "n": int(a.size),
    }


def time_calls_ms(fn: Callable[[], Any], *, warmup: int = 3, repeat: int = 10) -> list[float]:
    """Call `fn` `warmup` times untimed (allocator, oneDNN primitive creation, caches), then
    `repeat` times, and return each timed call's duration in milliseconds."""
    if repeat < 1 or warmup < 0:
        raise ValueError(f"need repeat >= 1 and warmup >= 0, got {repeat=}, {warmup=}")
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def median_ms(fn: Callable[[], Any], *, warmup: int = 3, repeat: int = 10) -> float:
    """Median duration of `fn()` in milliseconds, after `warmup` untimed calls."""
    return float(np.median(time_calls_ms(fn, warmup=warmup, repeat=repeat)))


class StepTimes:
    """Per-step durations of a training loop, summarized after dropping the first `skip` steps
    (warm-up: the first steps pay for allocator growth, oneDNN primitive creation and cold
    caches). Record with `add(seconds)` or `with times.step(): ...`."""

    def __init__(self, *, skip: int = 5) -> None:
        if skip < 0:
            raise ValueError(f"skip must be >= 0, got {skip}")
        self.skip = skip
        self._s = array("d")  # 8 bytes a step: a long run stays small

    def add(self, seconds: float) -> None:
        self._s.append(seconds)

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._s.append(time.perf_counter() - t0)

    def __len__(self) -> int:
        return len(self._s)

    @property
    def total_s(self) -> float:
        return float(sum(self._s))

    def summary(self) -> dict[str, float]:
        """`summarize_ms` of the steps after warm-up, plus `steps_skipped`. With no more than
        `skip` steps recorded, only the last one is kept (so a tiny run still reports a time, and
        `steps_skipped` shows how little it rests on)."""
        if not self._s:
            raise ValueError("no steps recorded")
        skipped = min(self.skip, len(self._s) - 1)
        out = summarize_ms([s * 1e3 for s in self._s[skipped:]])
        out["steps_skipped"] = skipped
        return out


def synchronize(device: torch.device) -> None:
    """Wait for work queued on `device`: accelerators run asynchronously, and a timer read
    without waiting sees only the launch. PyTorch's device-generic `torch.accelerator` does
    the waiting, so no device kind is named here; the CPU is synchronous."""
    current = torch.accelerator.current_accelerator()
    if current is not None and device.type == current.type:
        torch.accelerator.synchronize(device)


def inference_latency_ms(
    model: nn.Module,
    *,
    batch_size: int,
    resolution: int,
    channels: int = 3,
    channels_last: bool = False,
    warmup: int = 5,
    repeat: int = 20,
) -> dict[str, Any]:
    """Latency of one forward pass on a random batch, in eval mode under `torch.inference_mode()`:
    `summarize_ms` of `repeat` timed calls after `warmup` untimed ones, plus the settings.

    The input is (batch_size, channels, resolution, resolution) in the dtype and on the device of
    the model's first parameter; `channels_last=True` makes the input channels-last (convert the
    model with `model.to(memory_format=torch.channels_last)` yourself, as training would). Every
    module's training flag is restored afterwards, including modules a caller had put in eval
    mode inside a training model (frozen BatchNorm).
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    x = torch.randn(batch_size, channels, resolution, resolution, device=device, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()

    def forward() -> None:
        model(x)
        synchronize(device)

    try:
        with torch.inference_mode():
            times = time_calls_ms(forward, warmup=warmup, repeat=repeat)
    finally:
        for m, training in modes:
            m.training = training
    return {
        **summarize_ms(times),
        "batch_size": batch_size,
        "resolution": resolution,
        "channels_last": channels_last,
        "threads": torch.get_num_threads(),
    }
