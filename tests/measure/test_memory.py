"""RSS, its peaks, the paper's system measure, and the background sampler."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgetrain.errors import EdgeTrainError
from edgetrain.measure import (
    MB,
    RssSampler,
    current_rss_bytes,
    machine_ram_bytes,
    memory,
    peak_rss_bytes,
    reset_peak_rss,
    ru_maxrss_bytes,
    system_ram_permille,
)
from edgetrain.measure.memory import _combine, _Segment


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def test_current_rss_matches_proc_status():
    # statm and status come from the same counters; allow a little drift between the two reads.
    assert abs(current_rss_bytes() - _status_kib("VmRSS") * 1024) < 8 * MB


def test_peaks_are_at_least_current_rss():
    rss = current_rss_bytes()
    assert peak_rss_bytes() >= rss - MB
    assert ru_maxrss_bytes() >= rss - MB


def test_reset_peak_rss_forgets_an_earlier_spike():
    spike = np.ones(64 * MB // 8)  # touched: 64 MiB resident
    del spike
    if not reset_peak_rss():
        pytest.skip("this kernel or container refuses /proc/self/clear_refs")
    assert peak_rss_bytes() < current_rss_bytes() + 32 * MB


def test_system_measures():
    permille = system_ram_permille()
    assert 0 < permille < 1000
    with open("/proc/meminfo") as f:
        total_kib = int(f.readline().split()[1])  # first line is MemTotal
    assert machine_ram_bytes() == total_kib * 1024 > 0


def test_missing_proc_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(memory, "_STATM", "/nonexistent/statm")
    with pytest.raises(EdgeTrainError, match="/proc"):
        current_rss_bytes()
    with pytest.raises(EdgeTrainError, match="/proc"):
        RssSampler().start()


def test_sampler_sees_a_known_allocation():
    size = 200 * MB
    with RssSampler() as sampler:  # default 20 Hz
        time.sleep(0.15)
        baseline = sampler.mark("baseline")
        buf = np.ones(size // 8)  # np.ones writes every page, so all of it is resident
        time.sleep(0.3)
        sampler.mark("allocated")
        del buf  # a block this big is mmap'ed, so freeing returns it to the OS
        time.sleep(0.15)
    during = sampler.window("baseline", "allocated")
    rise = during.peak_bytes - baseline.rss_bytes
    assert 0.85 * size <= rise <= 1.15 * size, rise / MB
    assert during.rate_hz >= 10
    after = sampler.window("allocated")
    assert after.min_bytes < baseline.rss_bytes + 0.15 * size  # the free shows up too
    whole = sampler.stats()
    assert whole.peak_bytes == sampler.peak_bytes == during.peak_bytes
    assert whole.n_samples >= 10 and whole.rate_hz >= 10
    t, rss = sampler.samples
    assert len(t) == len(rss) == whole.n_samples  # no decimation in a short run: every sample
    assert np.all(np.diff(t) >= 0)
    assert rss.max() == whole.peak_bytes
    since, exact = sampler.since(baseline.t_s), sampler.window("baseline")
    assert (since.peak_bytes, since.n_samples) == (exact.peak_bytes, exact.n_samples)
    assert since.mean_bytes == pytest.approx(exact.mean_bytes)


def test_sampler_stops_promptly_and_samples_both_ends():
    sampler = RssSampler(interval_s=30.0).start()
    t0 = time.perf_counter()
    stats = sampler.stop()
    assert time.perf_counter() - t0 < 1.0  # no waiting out the 30 s interval
    assert stats.n_samples == 2  # the one at start() and the one at stop()
    assert not sampler.running
    assert sampler.stop() == stats  # idempotent
    with pytest.raises(RuntimeError):
        sampler.start()  # one run per sampler


def test_marks_by_object_and_label():
    with RssSampler(interval_s=30.0) as sampler:  # only the explicit samples below
        first = sampler.mark("epoch")
        assert sampler.sample_now() == sampler.last_bytes > 0
        second = sampler.mark("epoch")  # a repeated label
        assert sampler.window(first, second).n_samples == 3  # mark, sample_now, mark
        assert sampler.window("epoch") == sampler.window(second)  # a label means the latest
        t, rss = sampler.samples_since(first)
        assert list(t) == sorted(t) and len(t) == len(rss) == 3
        assert sampler.since(first).n_samples == 3
        assert [m.label for m in sampler.marks] == ["epoch", "epoch"]
        with pytest.raises(ValueError):
            sampler.window(second, first)


def test_sampler_misuse():
    sampler = RssSampler()
    with pytest.raises(RuntimeError):
        sampler.mark("too early")
    with pytest.raises(ValueError):
        RssSampler(interval_s=0)
    with sampler:
        sampler.mark("a")
        with pytest.raises(KeyError, match="'a'"):
            sampler.window("b")


def test_time_weighted_mean_and_windows():
    # RSS 100 for an instant, then 300 from t = 1 to t = 3: trapezoids 200 x 1 s + 300 x 2 s.
    first = _Segment(0.0, 100)
    first.add(1.0, 300)
    second = _Segment(1.0, 300)  # a mark at t = 1 ends `first` and starts `second`
    second.add(3.0, 300)
    both = _combine([first, second])
    assert both.mean_bytes == pytest.approx((200 * 1 + 300 * 2) / 3)
    assert (both.peak_bytes, both.min_bytes, both.n_samples) == (300, 100, 3)
    assert both.duration_s == 3.0
    single = _combine([_Segment(2.0, 123)])
    assert (single.mean_bytes, single.n_samples, single.duration_s) == (123, 1, 0.0)


def test_decimation_keeps_peaks_and_bounds_memory():
    sampler = RssSampler(max_samples=4)
    values = [5, 1, 9, 2, 3, 3, 7, 1, 4, 4, 8]
    for i, v in enumerate(values):
        sampler._store(float(i), v)
    t, rss = sampler.samples
    assert len(t) <= 4 + 1  # the bounded series plus one partial bucket
    assert rss.max() == max(values)
    # Stride 4 after two halvings: buckets [5,1,9,2] [3,3,7,1] and the partial [4,4,8].
    assert sampler._stride == 4
    assert list(t) == [0.0, 4.0, 8.0] and list(rss) == [9, 7, 8]
