"""Honest measurement of training memory and time (a library; the training engine and the
benchmarks call it).

Units: every `*_mb` value is MiB, `MB` = 2**20 bytes; `*_bytes` are bytes, `*_s` seconds, `*_ms`
milliseconds. RSS and the system measures read Linux's /proc.

- memory: `current_rss_bytes`, `peak_rss_bytes` / `reset_peak_rss` (kernel high-water mark),
  `ru_maxrss_bytes`, `system_ram_permille` (the paper's measure), `machine_ram_bytes`,
  `RssSampler` (background thread, >= 10 Hz, marks and windows).
- analytic: `analytic_footprint` (weights + grads + optimizer state + saved for backward), or
  `SavedTensorsCounter` + `footprint_from` inside a training loop; `Footprint`.
- timing: `Timer`, `median_ms`, `StepTimes` (per-step median after warm-up),
  `inference_latency_ms`.
- environment: `environment()`.
"""

from edgetrain.measure.analytic import (
    Footprint,
    SavedTensorsCounter,
    StorageSet,
    analytic_footprint,
    footprint_from,
    grads_bytes,
    optimizer_state_bytes,
    storage_bytes,
    weights_bytes,
)
from edgetrain.measure.environment import environment
from edgetrain.measure.memory import (
    RssMark,
    RssSampler,
    RssSeries,
    RssStats,
    cgroup_memory_limit_bytes,
    current_rss_bytes,
    machine_ram_bytes,
    peak_rss_bytes,
    reset_peak_rss,
    ru_maxrss_bytes,
    system_ram_permille,
)
from edgetrain.measure.timing import (
    StepTimes,
    Timer,
    inference_latency_ms,
    median_ms,
    summarize_ms,
    time_calls_ms,
)
from edgetrain.measure.units import MB, to_mb

__all__ = [
    "MB",
    "Footprint",
    "RssMark",
    "RssSampler",
    "RssSeries",
    "RssStats",
    "SavedTensorsCounter",
    "StepTimes",
    "StorageSet",
    "Timer",
    "analytic_footprint",
    "cgroup_memory_limit_bytes",
    "current_rss_bytes",
    "environment",
    "footprint_from",
    "grads_bytes",
    "inference_latency_ms",
    "machine_ram_bytes",
    "median_ms",
    "optimizer_state_bytes",
    "peak_rss_bytes",
    "reset_peak_rss",
    "ru_maxrss_bytes",
    "storage_bytes",
    "summarize_ms",
    "system_ram_permille",
    "time_calls_ms",
    "to_mb",
    "weights_bytes",
]
