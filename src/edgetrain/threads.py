"""The one rule for a thread count, wherever it is read: a flag, a run config, or the
EDGETRAIN_THREADS environment variable.

A count must be a whole number 1..1024, and where threads are started, at most the CPUs this
process may use: more threads than CPUs only take turns (one image took 38 s instead of 0.4 s
with 999 threads on 2 cores). A run config is checked against the range only, because it is
read back on other machines (export, evaluate) that need not have the CPUs it trained with.
Standard library only: the .onnx prediction path imports this without torch.
"""

from __future__ import annotations

import os

from edgetrain.errors import EdgeTrainError

MAX_THREADS = 1024
ENV_VAR = "EDGETRAIN_THREADS"
RULE = f"1..{MAX_THREADS} (and at most the CPUs this process may use)"


def available_cpus() -> int:
    """CPUs this process may run on (affinity and cgroup cpusets included)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_thread_range(threads: int | None, name: str = "threads") -> None:
    """Refuse a count outside 1..1024 (None: the runtime's default, allowed)."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise EdgeTrainError(f"{name} must be {RULE}, got {threads!r}")


def bound_threads(threads: int | None, name: str = "--threads") -> int | None:
    """`threads` if it is in range and at most the CPUs this process may use; else one line."""
    check_thread_range(threads, name)
    cpus = available_cpus()
    if threads is not None and threads > cpus:
        raise EdgeTrainError(
            f"{name} {threads}: this process may use {cpus} CPU(s); give 1..{cpus}"
        )
    return threads


def resolve_threads(flag: int | None) -> int | None:
    """The thread count to start: the flag when given, else EDGETRAIN_THREADS when set and not
    empty, else None (the runtime's default); either is bounded by `bound_threads`."""
    if flag is not None:
        return bound_threads(flag, "--threads")
    text = os.environ.get(ENV_VAR, "").strip()
    if not text:
        return None
    # a plain decimal only: int() would also take "1_0" or "+4", and a 5000-digit string
    # would raise Python's own conversion-limit error
    if not (text.isascii() and text.isdigit() and len(text) <= 6):
        raise EdgeTrainError(f"{ENV_VAR} must be a whole number {RULE}, got {text[:40]!r}")
    return bound_threads(int(text), ENV_VAR)
