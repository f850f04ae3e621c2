"""Process and system memory on Linux: RSS now, its peaks, the paper's system-RAM measure, and a
background sampler that turns RSS into a time series with named marks.

Everything reads /proc, so it works in a fresh process with no extra dependency. Which number to
trust for what:
- `RssSampler`: RSS over time (>= 10 Hz) -> peak and mean over any window (e.g. training only).
- `peak_rss_bytes()`: the kernel's own RSS high-water mark (VmHWM) - sees spikes between samples;
  `reset_peak_rss()` restarts it, e.g. at the baseline.
- `ru_maxrss_bytes()`: what most tools report, but on Linux it is inherited across fork+exec, so in
  a child started by a big parent it can be the parent's size (see its docstring).
- `system_ram_permille()`: the paper's number, for comparison only; it measures the whole machine.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from array import array
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from edgetrain.errors import EdgeTrainError
from edgetrain.measure.units import MB

_STATM = "/proc/self/statm"
_STATUS = "/proc/self/status"
_MEMINFO = "/proc/meminfo"
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _no_proc(path: str) -> EdgeTrainError:
    return EdgeTrainError(
        f"cannot read {path}: edgetrain measures memory through Linux's /proc, which this system "
        f"({sys.platform}) does not provide. Run the measurement on Linux (the edge devices it "
        "targets: Jetson, Raspberry Pi, industrial PCs) or skip memory measurement."
    )


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        raise _no_proc(path) from None


def _kib_field(text: str, key: str) -> int:
    """Bytes of a `Key:   123 kB` line of /proc/meminfo or /proc/self/status."""
    for line in text.splitlines():
        if line.startswith(key) and line[len(key)] == ":":
            return int(line.split()[1]) * 1024
    raise EdgeTrainError(f"no {key!r} line in /proc (kernel too old or not Linux?)")


def current_rss_bytes() -> int:
    """Resident set size of this process now, in bytes: resident pages (/proc/self/statm) times the
    page size. Includes shared, file-backed pages (e.g. libtorch's code), as RSS always does."""
    return int(_read_text(_STATM).split()[1]) * _PAGE_SIZE


def peak_rss_bytes() -> int:
    """The kernel's high-water mark of this process's RSS (VmHWM), in bytes.

    Unlike a sampler it cannot miss a short spike. It covers the time since this process started
    (exec) or since the last `reset_peak_rss()`, whichever is later.
    """
    return _kib_field(_read_text(_STATUS), "VmHWM")


def reset_peak_rss() -> bool:
    """Restart the kernel's RSS high-water mark (`peak_rss_bytes`) at the current RSS, by writing 5
    to /proc/self/clear_refs (Linux >= 4.0). Returns False where the kernel or a container refuses;
    the peak then still counts from process start. Also resets the current-process part of
    `ru_maxrss_bytes`."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def ru_maxrss_bytes() -> int:
    """getrusage(RUSAGE_SELF).ru_maxrss in bytes (Linux reports KiB, macOS bytes).

    Caveat measured here (Linux): the value is inherited across fork+exec - a fresh `python -c`
    started by a parent with 420 MiB resident reports ru_maxrss = 426 MiB while its own VmHWM is
    9 MiB. So in a child process (subprocess, multiprocessing spawn/fork) it is at least the
    parent's RSS at the time of the fork. Prefer `peak_rss_bytes()` or the sampler's peak.
    """
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss) if sys.platform == "darwin" else int(maxrss) * 1024


def machine_ram_bytes() -> int:
    """Total RAM of the machine in bytes (MemTotal). In a container this is the host's RAM; see
    `cgroup_memory_limit_bytes()` for the limit that applies to this process."""
    try:
        return _kib_field(_read_text(_MEMINFO), "MemTotal")
    except EdgeTrainError:
        # Not Linux: the POSIX page count is the only dependency-free source.
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def system_ram_permille() -> float:
    """The paper's memory measure: 1000 x (MemTotal - MemAvailable) / MemTotal from /proc/meminfo.

    It is the fraction of the whole machine's RAM in use (every process, plus the kernel's
    unreclaimable memory), so it mostly measures the framework and whatever else runs. Reported
    only so results can be compared with the paper, which sampled it once per epoch.
    """
    text = _read_text(_MEMINFO)
    total = _kib_field(text, "MemTotal")
    available = _kib_field(text, "MemAvailable")
    return 1000.0 * (total - available) / total


def cgroup_memory_limit_bytes() -> int | None:
    """The memory limit of this process's cgroup (v2 `memory.max`, or v1 `limit_in_bytes`), in
    bytes, or None when unlimited or unknown. On a container or a systemd slice it can be far
    below `machine_ram_bytes()`."""
    candidates = []
    try:
        # v2: a "0::/some/path" line -> /sys/fs/cgroup/some/path/memory.max
        for line in _read_text("/proc/self/cgroup").splitlines():
            if line.startswith("0::"):
                candidates.append(f"/sys/fs/cgroup{line[3:].rstrip('/')}/memory.max")
    except EdgeTrainError:
        return None
    candidates += ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
    for path in candidates:
        try:
            with open(path) as f:
                value = f.read().strip()
        except OSError:
            continue
        if value == "max":
            return None
        limit = int(value)
        # v1 reports "unlimited" as a huge number near 2**63.
        return None if limit >= 2**60 else limit
    return None


# --------------------------------------------------------------------------------------------
# Sampler


@dataclass(frozen=True)
class RssMark:
    """A named event on the sampler's clock (seconds since `start()`) and the RSS at that time."""

    label: str
    t_s: float
    rss_bytes: int


@dataclass(frozen=True)
class RssStats:
    """RSS statistics over a time window. `mean_bytes` is time-weighted (trapezoidal: each interval
    between two samples counts with its length), so irregular sample spacing does not bias it;
    a window with a single instant reports that sample."""

    peak_bytes: int
    mean_bytes: float
    min_bytes: int
    n_samples: int
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / MB

    @property
    def mean_mb(self) -> float:
        return self.mean_bytes / MB

    @property
    def rate_hz(self) -> float:
        """Samples per second over the window (intervals / duration)."""
        return (self.n_samples - 1) / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {
            "peak_rss_mb": self.peak_mb,
            "mean_rss_mb": self.mean_mb,
            "min_rss_mb": self.min_bytes / MB,
            "n_samples": self.n_samples,
            "duration_s": self.duration_s,
        }


class RssSeries(NamedTuple):
    """The sampled time series: seconds since start (float64) and RSS bytes (int64)."""

    t_s: np.ndarray
    rss_bytes: np.ndarray


class _Segment:
    """Exact running aggregates of the samples between two marks (both ends included)."""

    __slots__ = ("integral", "last_rss", "last_t", "n", "peak", "start_t", "trough")

    def __init__(self, t: float, rss: int) -> None:
        self.start_t = self.last_t = t
        self.peak = self.trough = self.last_rss = rss
        self.integral = 0.0  # byte-seconds, trapezoidal
        self.n = 1

    def add(self, t: float, rss: int) -> None:
        self.integral += 0.5 * (self.last_rss + rss) * (t - self.last_t)
        self.last_t, self.last_rss = t, rss
        self.n += 1
        if rss > self.peak:
            self.peak = rss
        elif rss < self.trough:
            self.trough = rss


def _combine(segments: list[_Segment]) -> RssStats:
    start, end = segments[0].start_t, segments[-1].last_t
    duration = end - start
    integral = sum(s.integral for s in segments)
    peak = max(s.peak for s in segments)
    # A mark's sample ends one segment and starts the next: count it once.
    n = sum(s.n for s in segments) - (len(segments) - 1)
    mean = integral / duration if duration > 0 else float(segments[-1].last_rss)
    return RssStats(peak, mean, min(s.trough for s in segments), n, start, end)


class RssSampler:
    """Samples this process's RSS from a background daemon thread into a time series.

    Use as a context manager or with `start()` / `stop()`; one sampler covers one run (it cannot
    be restarted). It samples once at `start()`, every `interval_s` after (default 0.05 s = 20 Hz;
    the issue asks for >= 10 Hz), and once at `stop()`, so even a very short window has samples.
    `mark(label)` samples immediately and records a named event; `window(label)` then gives exact
    peak and time-weighted mean from that mark on (e.g. over training only, after 'baseline').

    Cost: one pread of /proc/self/statm (a few microseconds) per sample; the thread needs the GIL
    only for that moment, which PyTorch ops release. Peak, mean and min per window are exact
    running aggregates over every sample. The stored series (`samples`, `since()`) is kept to at
    most `max_samples` points (16 bytes each): when full, neighbouring points are merged (keeping
    their maximum, so peaks survive) and the stride doubles, so a days-long run costs a few MiB,
    not an ever-growing buffer.
    """

    def __init__(self, interval_s: float = 0.05, *, max_samples: int = 100_000) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        if max_samples < 2:
            raise ValueError(f"max_samples must be >= 2, got {max_samples!r}")
        self.interval_s = float(interval_s)
        self.max_samples = max_samples + (max_samples % 2)  # even, so halving pairs up cleanly
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._t0 = 0.0
        self._state = "new"  # new -> running -> stopped
        self._error: BaseException | None = None
        self._segments: list[_Segment] = []
        self._marks: list[RssMark] = []
        self._mark_segment: list[int] = []  # index of the segment each mark starts
        # Stored series, `stride` raw samples per stored point (first time, max RSS).
        self._t = array("d")
        self._v = array("q")
        self._stride = 1
        self._pend_t = 0.0
        self._pend_max = 0
        self._pend_n = 0

    # ---- lifecycle

    def start(self) -> RssSampler:
        """Take the first sample and start the sampling thread; returns self."""
        if self._state != "new":
            raise RuntimeError("an RssSampler samples one run; create a new one to sample again")
        try:
            self._fd = os.open(_STATM, os.O_RDONLY)
        except FileNotFoundError:
            raise _no_proc(_STATM) from None
        self._t0 = time.monotonic()
        self._segments.append(_Segment(0.0, self._read()))
        self._store(0.0, self._segments[0].last_rss)
        self._state = "running"
        self._thread = threading.Thread(target=self._run, name="edgetrain-rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> RssStats:
        """Stop the thread (promptly: it waits on an event, not a sleep), take a last sample and
        return the statistics over the whole run. Calling it again just returns them."""
        if self._state == "new":
            raise RuntimeError("stop() before start()")
        if self._state == "running":
            self._stop_event.set()
            assert self._thread is not None
            self._thread.join()
            if self._error is None:
                self._sample()
            assert self._fd is not None
            os.close(self._fd)
            self._state = "stopped"
            if self._error is not None:
                raise EdgeTrainError(f"RSS sampling failed: {self._error}") from self._error
        return self.stats()

    def __enter__(self) -> RssSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._state == "running"

    # ---- sampling

    def _read(self) -> int:
        assert self._fd is not None
        # pread at offset 0 re-reads the procfs file without reopening it.
        return int(os.pread(self._fd, 128, 0).split(maxsplit=2)[1]) * _PAGE_SIZE

    def _sample(self) -> tuple[float, int]:
        with self._lock:
            rss = self._read()
            t = time.monotonic() - self._t0
            self._record(t, rss)
        return t, rss

    def _record(self, t: float, rss: int) -> None:
        self._segments[-1].add(t, rss)
        self._store(t, rss)

    def _store(self, t: float, rss: int) -> None:
        if self._pend_n == 0:
            self._pend_t, self._pend_max = t, rss
        elif rss > self._pend_max:
            self._pend_max = rss
        self._pend_n += 1
        if self._pend_n < self._stride:
            return
        self._t.append(self._pend_t)
        self._v.append(self._pend_max)
        self._pend_n = 0
        if len(self._t) >= self.max_samples:
            # Halve: pair up neighbours, keep the first time and the larger RSS of each pair.
            v = np.frombuffer(self._v, dtype=np.int64)
            self._v = array("q", np.maximum(v[0::2], v[1::2]).tobytes())
            self._t = self._t[0::2]
            self._stride *= 2

    def _run(self) -> None:
        deadline = time.monotonic() + self.interval_s
        while not self._stop_event.wait(max(0.0, deadline - time.monotonic())):
            try:
                self._sample()
            except BaseException as e:  # surfaced by stop(); a dead thread must not go unnoticed
                self._error = e
                return
            deadline += self.interval_s
            now = time.monotonic()
            if deadline < now:
                # Fell behind (e.g. something held the GIL): resume the grid, don't burst-sample.
                deadline = now + self.interval_s

    # ---- marks and windows

    def sample_now(self) -> int:
        """Take a sample now (outside the thread's schedule) and return its RSS in bytes."""
        if self._state != "running":
            raise RuntimeError("sample_now() needs a running sampler")
        return self._sample()[1]

    @property
    def last_bytes(self) -> int:
        """RSS of the latest sample, without reading /proc (cheap enough for a progress bar)."""
        if self._state == "new":
            raise RuntimeError("no samples yet: start() the sampler first")
        with self._lock:
            return self._segments[-1].last_rss

    def mark(self, label: str) -> RssMark:
        """Sample now and record a named event (e.g. 'baseline', 'epoch 1'); `window(mark)` or
        `window(label)` then starts exactly at this sample. Labels may repeat: a label looks up
        the latest mark with it, the returned `RssMark` always its own."""
        if self._state != "running":
            raise RuntimeError("mark() needs a running sampler")
        with self._lock:
            rss = self._read()
            t = time.monotonic() - self._t0
            self._record(t, rss)
            self._segments.append(_Segment(t, rss))
            mark = RssMark(label, t, rss)
            self._marks.append(mark)
            self._mark_segment.append(len(self._segments) - 1)
        return mark

    @property
    def marks(self) -> list[RssMark]:
        with self._lock:
            return list(self._marks)

    def _mark_index(self, mark: str | RssMark) -> int:
        for i in range(len(self._marks) - 1, -1, -1):
            m = self._marks[i]
            if m is mark or (isinstance(mark, str) and m.label == mark):
                return i
        known = ", ".join(repr(m.label) for m in self._marks) or "none"
        raise KeyError(f"no mark {mark!r} on this sampler (marks: {known})")

    def window(self, start: str | RssMark, end: str | RssMark | None = None) -> RssStats:
        """Exact RSS statistics from mark `start` to mark `end` (a label or the `RssMark` that
        `mark()` returned; default end: the latest sample, after `stop()` the last one). Both end
        samples are included. `window(baseline).peak_bytes - baseline.rss_bytes` is the peak
        above the baseline."""
        with self._lock:
            i = self._mark_segment[self._mark_index(start)]
            j = len(self._segments) if end is None else self._mark_segment[self._mark_index(end)]
            if j <= i:
                raise ValueError(f"mark {end!r} is not after mark {start!r}")
            return _combine(self._segments[i:j])

    def stats(self) -> RssStats:
        """Exact statistics over everything sampled so far (start to the latest sample)."""
        if self._state == "new":
            raise RuntimeError("no samples yet: start() the sampler first")
        with self._lock:
            return _combine(self._segments)

    @property
    def peak_bytes(self) -> int:
        return self.stats().peak_bytes

    @property
    def mean_bytes(self) -> float:
        """Time-weighted (trapezoidal) mean RSS over the whole run so far."""
        return self.stats().mean_bytes

    @property
    def samples(self) -> RssSeries:
        """Copy of the stored series (see the class docstring on decimation); the last point may
        stand for fewer raw samples than the stride."""
        with self._lock:
            t = np.array(self._t, dtype=np.float64)
            v = np.array(self._v, dtype=np.int64)
            if self._pend_n:
                t = np.append(t, self._pend_t)
                v = np.append(v, self._pend_max)
        return RssSeries(t, v)

    def samples_since(self, start: str | RssMark | float) -> RssSeries:
        """The stored series from a mark (label or `RssMark`) or a time in seconds on the
        sampler's clock to the latest sample, e.g. to append one epoch to an RSS trace file
        (`for t, b in zip(*sampler.samples_since(mark))`)."""
        if isinstance(start, str | RssMark):
            with self._lock:
                start = self._marks[self._mark_index(start)].t_s
        t, v = self.samples
        keep = t >= start
        return RssSeries(t[keep], v[keep])

    def since(self, start: str | RssMark | float) -> RssStats:
        """Statistics over `samples_since(start)`. Exact only while the series has not been
        decimated (see the class docstring); `window(mark)` is exact on runs of any length."""
        t, v = self.samples_since(start)
        if t.size == 0:
            raise ValueError(f"no samples since {start!r}")
        v = v.astype(np.float64)
        duration = float(t[-1] - t[0])
        if duration > 0:
            mean = float(np.sum(0.5 * (v[1:] + v[:-1]) * np.diff(t)) / duration)
        else:
            mean = float(v.mean())
        return RssStats(int(v.max()), mean, int(v.min()), int(v.size), float(t[0]), float(t[-1]))
