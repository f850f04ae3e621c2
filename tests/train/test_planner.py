"""The memory planner: sizes, device profiles, picking a setting, refusing, stopping over budget."""

from __future__ import annotations

import pytest
import torch

from edgetrain import EdgeTrainError, create_model
from edgetrain.train import RunConfig, train
from edgetrain.train import engine as engine_mod
from edgetrain.train.checkpoint import load_checkpoint
from edgetrain.train.engine import MemoryBudgetExceeded
from edgetrain.train.planner import (
    Candidate,
    Plan,
    load_device,
    make_plan,
    parse_size,
    shipped_devices,
)

TINY = dict(
    model="xception_lite",
    model_args={"middle_depth": 1},
    data="synthetic-pcb:per_class=8,size=32",
    resolution=32,
    batch_size=8,
    epochs=1,
    threads=1,
    latency_repeat=2,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.5GB", 1_500_000_000),
        ("1GiB", 2**30),
        ("800MB", 800_000_000),
        ("512", 512 * 2**20),
        ("2.5 GiB", int(2.5 * 2**30)),
        ("64MiB", 64 * 2**20),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "lots", "1.5XB", "0GB", "-1GB"])
def test_parse_size_errors(bad):
    with pytest.raises(EdgeTrainError):
        parse_size(bad)


def test_device_profiles(tmp_path):
    assert {"jetson-xavier-nx-8gb", "raspberry-pi-4-4gb"} <= set(shipped_devices())
    pi = load_device("raspberry-pi-4-4gb")
    assert pi.threads == 4 and pi.budget_bytes < pi.memory_bytes
    own = tmp_path / "mine.toml"
    own.write_text('name = "mine"\nmemory = "2GB"\nbudget = "1GiB"\nthreads = 2\n')
    assert load_device(str(own)).budget_bytes == 2**30
    with pytest.raises(EdgeTrainError, match="unknown device"):
        load_device("toaster")
    (tmp_path / "bad.toml").write_text("name = 1\n")
    with pytest.raises(EdgeTrainError, match="bad device profile"):
        load_device(str(tmp_path / "bad.toml"))


def _plan(budget_bytes, baseline_bytes=0):
    torch.manual_seed(0)
    model = create_model("xception_lite", num_classes=6, middle_depth=1).train()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    return make_plan(
        model,
        budget_bytes=budget_bytes,
        baseline_bytes=baseline_bytes,
        batch_size=8,
        x=x,
        y=y,
        optimizer="adam",
        momentum=0.9,
        channels_last=False,
        precisions=("fp32",),
    )


def test_plan_picks_fastest_fitting_and_predictions_order():
    roomy = _plan(2**40)
    by_setting = {(c.micro_batch, c.checkpointing): c for c in roomy.candidates}
    # smaller micro-batches and checkpointing each predict a lower peak
    # at 32 px the last feature map is 1x1: a micro-batch of 1 cannot train and is left out
    assert 1 not in {c.micro_batch for c in roomy.candidates}
    assert by_setting[(2, False)].predicted_peak_mb < by_setting[(8, False)].predicted_peak_mb
    assert by_setting[(8, True)].predicted_peak_mb < by_setting[(8, False)].predicted_peak_mb
    assert roomy.chosen == min(roomy.candidates, key=lambda c: c.predicted_step_s)
    peaks = sorted(c.predicted_peak_mb for c in roomy.candidates)
    budget_mb = (peaks[0] + peaks[-1]) / 2
    tight = _plan(int(budget_mb * 2**20))
    fitting = [c for c in tight.candidates if c.predicted_peak_mb <= budget_mb]
    assert tight.chosen.fits and tight.chosen.predicted_peak_mb <= budget_mb
    assert tight.chosen.predicted_step_s == min(c.predicted_step_s for c in fitting)
    assert any(not c.fits for c in tight.candidates)


def test_plan_refuses_impossible_budget():
    with pytest.raises(EdgeTrainError, match="nothing fits a budget of 100 MB"):
        _plan(100 * 2**20, baseline_bytes=400 * 2**20)


def test_train_refuses_impossible_budget_before_training(tmp_path):
    with pytest.raises(EdgeTrainError, match="nothing fits"):
        train(RunConfig(**TINY, memory_budget_mb=1.0), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_over_budget_run_stops_with_a_checkpoint(tmp_path, monkeypatch):
    # a planner that wrongly believes everything fits: the guard in the loop must still stop
    def optimistic(*_args, batch_size, budget_bytes, baseline_bytes, **_kw):
        c = Candidate(batch_size, False, "fp32", baseline_bytes / 2**20, 0.1, True)
        return Plan(budget_bytes / 2**20, baseline_bytes / 2**20, 0.0, c, (c,))

    monkeypatch.setattr("edgetrain.train.planner.make_plan", optimistic)
    run = tmp_path / "run"
    with pytest.raises(MemoryBudgetExceeded, match=r"memory budget exceeded.*step 1"):
        train(RunConfig(**TINY, memory_budget_mb=10.0), run, progress=False)
    state = load_checkpoint(run / "stopped.pt")
    assert state["step"] == 1 and "model" in state and "optimizer" in state
    assert (run / "plan.json").exists()


def test_device_profile_sets_threads_and_budget():
    cfg = engine_mod._apply_device(
        RunConfig(**{**TINY, "threads": None}, device="raspberry-pi-4-4gb")
    )
    assert cfg.threads == 4 and cfg.memory_budget_mb == pytest.approx(2.5 * 1024)
    kept = engine_mod._apply_device(RunConfig(**TINY, device="raspberry-pi-4-4gb"))
    assert kept.threads == 1  # what the user gave wins
