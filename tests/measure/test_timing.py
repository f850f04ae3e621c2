"""Timer, repeated-call statistics, per-step warm-up handling and inference latency."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from edgetrain.measure import StepTimes, Timer, inference_latency_ms, median_ms, summarize_ms


def test_summarize_ms():
    s = summarize_ms([float(v) for v in range(1, 11)])
    assert s == {
        "median_ms": 5.5,
        "p90_ms": pytest.approx(9.1),  # linear interpolation between 9 and 10
        "mean_ms": 5.5,
        "min_ms": 1.0,
        "max_ms": 10.0,
        "n": 10,
    }
    with pytest.raises(ValueError):
        summarize_ms([])


def test_timer_and_median_ms():
    with Timer() as t:
        time.sleep(0.01)
    assert 9 <= t.elapsed_ms < 200
    calls = []
    ms = median_ms(lambda: (calls.append(1), time.sleep(0.005)), warmup=2, repeat=5)
    assert len(calls) == 7
    assert 4.5 <= ms < 100


def test_step_times_drop_warmup():
    times = StepTimes(skip=2)
    for s in (1.0, 0.5, 0.01, 0.02, 0.03):
        times.add(s)
    summary = times.summary()
    assert summary["steps_skipped"] == 2
    assert summary["n"] == 3
    assert summary["median_ms"] == pytest.approx(20.0)
    assert times.total_s == pytest.approx(1.56)
    short = StepTimes(skip=5)
    with short.step():
        pass
    assert short.summary()["steps_skipped"] == 0  # keeps at least one step
    assert len(short) == 1


def test_inference_latency_restores_modes():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Dropout(0.2), nn.LazyLinear(2)
    )
    model(torch.randn(2, 3, 16, 16))  # materialize the lazy layer
    model.train()
    model[1].eval()  # a frozen BatchNorm inside a training model must stay frozen
    out = inference_latency_ms(model, batch_size=2, resolution=16, warmup=1, repeat=3)
    assert out["n"] == 3 and out["batch_size"] == 2 and out["resolution"] == 16
    assert 0 < out["min_ms"] <= out["median_ms"] <= out["p90_ms"] <= out["max_ms"]
    assert model.training and model[3].training and not model[1].training
    out = inference_latency_ms(
        model.eval(), batch_size=1, resolution=16, channels_last=True, warmup=0, repeat=2
    )
    assert out["median_ms"] > 0 and out["channels_last"]
    assert not model.training
