"""The memory planner: sizes, device profiles, picking a setting, refusing, stopping over budget."""

from __future__ import annotations

import pytest
import torch

from edgetrain import EdgeTrainError, create_model
from edgetrain.measure.units import parse_size
from edgetrain.train import RunConfig, train
from edgetrain.train.budget import MemoryBudgetExceeded, apply_device_profile
from edgetrain.train.checkpoint import load_checkpoint
from edgetrain.train.devices import load_device, shipped_devices
from edgetrain.train.planner import OVERHEAD, Candidate, Plan, fixed_training_bytes, make_plan
from edgetrain.train.probe import Probe, can_train_single_image, probe_settings

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
        # one convention: MB = MiB = 2^20 bytes, GB = GiB = 2^30 (as every figure edgetrain prints)
        ("1.5GB", int(1.5 * 2**30)),
        ("1GiB", 2**30),
        ("1GB", 2**30),
        ("800MB", 800 * 2**20),
        ("1024MB", 2**30),
        ("4kb", 4096),
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


_PROBES = {}


def _plan(budget_bytes, baseline_bytes=0):
    if not _PROBES:  # probe the tiny model once for the tests below
        torch.manual_seed(0)
        model = create_model("xception_lite", num_classes=6, middle_depth=1).train()
        x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
        _PROBES["probes"] = probe_settings(model, x, y, channels_last=False, precisions=("fp32",))
        _PROBES["single"] = can_train_single_image(model, x)
        trainable = sum(p.numel() * 4 for p in model.parameters())
        _PROBES["fixed"] = fixed_training_bytes(trainable, "adam", 0.9)
    return make_plan(
        _PROBES["probes"],
        budget_bytes=budget_bytes,
        baseline_bytes=baseline_bytes,
        batch_size=8,
        fixed_bytes=_PROBES["fixed"],
        min_micro_batch=1 if _PROBES["single"] else 2,
    )


def _fake_probe(checkpointing, saved, block, step):
    return Probe(checkpointing, "fp32", (2, 4), saved, block, step)


def test_make_plan_arithmetic_on_hand_made_probes():
    mib = 2**20
    plain = _fake_probe(False, (200 * mib, 400 * mib), (60 * mib, 120 * mib), (1.0, 1.8))
    ckpt = _fake_probe(True, (20 * mib, 40 * mib), (60 * mib, 120 * mib), (1.3, 2.4))
    plan = make_plan(
        [plain, ckpt],
        budget_bytes=700 * mib,
        baseline_bytes=300 * mib,
        batch_size=8,
        fixed_bytes=50 * mib,
    )
    by = {(c.micro_batch, c.checkpointing): c for c in plan.candidates}
    # saved(m) = 100 MB per image; m = 2: 300 + 1.2 * (50 + 200) = 600 MB
    assert by[(2, False)].predicted_peak_mb == pytest.approx(300 + OVERHEAD * 250)
    # checkpointing adds the largest block, recomputed in backward: m = 8 -> saved 80, block 240
    assert by[(8, True)].predicted_peak_mb == pytest.approx(300 + OVERHEAD * (50 + 80 + 240))
    # time per step over the batch: (8 / m) * (c + d * m) with c = 0.2 s, d = 0.4 s per image
    assert by[(2, False)].predicted_step_s == pytest.approx(4 * (0.2 + 0.4 * 2))
    fitting = [c for c in plan.candidates if c.predicted_peak_mb <= 700]
    assert plan.chosen == min(fitting, key=lambda c: c.predicted_step_s)
    assert {c.micro_batch for c in plan.candidates} == {1, 2, 4, 8}
    none_of_one = make_plan(
        [plain],
        budget_bytes=2**40,
        baseline_bytes=0,
        batch_size=8,
        fixed_bytes=0,
        min_micro_batch=2,
    )
    assert 1 not in {c.micro_batch for c in none_of_one.candidates}


def test_plan_picks_fastest_fitting_and_predictions_order():
    roomy = _plan(2**40)
    by_setting = {(c.micro_batch, c.checkpointing): c for c in roomy.candidates}
    # smaller micro-batches and checkpointing each predict a lower peak
    # at 32 px the last feature map is 1x1: a micro-batch of 1 cannot train and is left out
    assert 1 not in {c.micro_batch for c in roomy.candidates}
    assert by_setting[(2, False)].predicted_peak_mb < by_setting[(8, False)].predicted_peak_mb
    # checkpointing keeps only the blocks' inputs for backward (at this tiny size the block it
    # recomputes costs about as much again, so only the saved part is compared)
    plain, ckpt = sorted(_PROBES["probes"], key=lambda p: p.checkpointing)
    assert ckpt.saved_at(8) < plain.saved_at(8) / 2
    plain_only = [c for c in roomy.candidates if not c.checkpointing]
    assert roomy.chosen == min(plain_only, key=lambda c: c.predicted_step_s)
    peaks = sorted(c.predicted_peak_mb for c in roomy.candidates)
    budget_mb = (peaks[0] + peaks[-1]) / 2
    tight = _plan(int(budget_mb * 2**20))
    fitting = [c for c in tight.candidates if c.predicted_peak_mb <= budget_mb]
    assert tight.chosen.fits and tight.chosen.predicted_peak_mb <= budget_mb
    plain_fit = {(c.micro_batch, c.precision) for c in fitting if not c.checkpointing}
    worth = [
        c for c in fitting if not (c.checkpointing and (c.micro_batch, c.precision) in plain_fit)
    ]
    assert tight.chosen.predicted_step_s == min(c.predicted_step_s for c in worth)
    assert any(not c.fits for c in tight.candidates)


def test_checkpointing_is_not_chosen_when_the_same_setting_fits_without_it():
    mib = 2**20
    # timing noise made checkpointing look faster than plain training
    plain = _fake_probe(False, (200 * mib, 400 * mib), (60 * mib, 120 * mib), (1.0, 1.8))
    ckpt = _fake_probe(True, (20 * mib, 40 * mib), (60 * mib, 120 * mib), (0.9, 1.6))
    kw = dict(baseline_bytes=0, batch_size=8, fixed_bytes=0)
    roomy = make_plan([plain, ckpt], budget_bytes=2**40, **kw)
    assert not roomy.chosen.checkpointing
    # where plain training does not fit, checkpointing is what fits
    tight = make_plan([plain, ckpt], budget_bytes=500 * mib, **kw)
    assert tight.chosen.checkpointing and tight.chosen.micro_batch == 8


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

    monkeypatch.setattr("edgetrain.train.budget.make_plan", optimistic)
    monkeypatch.setattr("edgetrain.train.budget.probe_in_subprocess", lambda *a: ([], True))
    run = tmp_path / "run"
    with pytest.raises(MemoryBudgetExceeded, match=r"memory budget exceeded.*step 1"):
        train(RunConfig(**TINY, memory_budget_mb=10.0), run, progress=False)
    state = load_checkpoint(run / "stopped.pt")
    assert state["step"] == 1 and "model" in state and "optimizer" in state
    assert (run / "plan.json").exists()


def test_device_profile_sets_threads_and_budget():
    cfg = apply_device_profile(RunConfig(**{**TINY, "threads": None}, device="raspberry-pi-4-4gb"))
    assert cfg.threads == 4 and cfg.memory_budget_mb == pytest.approx(2.5 * 1024)
    kept = apply_device_profile(RunConfig(**TINY, device="raspberry-pi-4-4gb"))
    assert kept.threads == 1  # what the user gave wins
