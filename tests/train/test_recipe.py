"""The short-run recipe: learning-rate schedules per step, the weight EMA, label smoothing, and a
resume in the middle of a schedule that computes exactly what an uninterrupted run does."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgetrain import EdgeTrainError
from edgetrain.train import RunConfig, train
from edgetrain.train.accelerator import resolve_accelerator
from edgetrain.train.recipe import WeightEma, lr_at
from edgetrain.train.rundir import RunDir
from edgetrain.train.step import train_step

LR = 1e-3


def _rates(schedule: str, total: int, warmup: int) -> list[float]:
    return [
        lr_at(t, base_lr=LR, total_steps=total, warmup_steps=warmup, schedule=schedule)
        for t in range(total)
    ]


def test_constant_with_warmup_rises_linearly_then_holds():
    assert _rates("constant", 6, 4) == pytest.approx([LR / 4, LR / 2, 3 * LR / 4, LR, LR, LR])
    assert _rates("constant", 3, 0) == [LR, LR, LR]  # the paper's protocol


def test_cosine_falls_from_the_peak_to_zero_at_the_last_step():
    rates = _rates("cosine", 7, 2)
    assert rates[:2] == pytest.approx([LR / 2, LR])
    # 5 steps after warm-up: progress 0, 1/4, 1/2, 3/4, 1
    expected = [LR * (1 + math.cos(math.pi * p)) / 2 for p in (0, 0.25, 0.5, 0.75, 1)]
    assert rates[2:] == pytest.approx(expected)
    assert rates[-1] == 0.0


def test_onecycle_rises_from_a_25th_and_ends_far_below():
    rates = _rates("onecycle", 11, 0)  # rising phase: round(0.3 * 11) = 3 steps
    assert rates[0] == pytest.approx(LR / 25)
    assert rates[3] == pytest.approx(LR) and max(rates) == pytest.approx(LR)
    assert rates[-1] == pytest.approx(LR / 25 / 1e4)
    assert all(a <= b for a, b in itertools.pairwise(rates[:4]))
    assert all(a >= b for a, b in itertools.pairwise(rates[3:]))


def test_ema_equals_a_hand_computed_average():
    net = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema = WeightEma(net, decay=0.5)
    avg = 1.0
    for n, w in enumerate([3.0, -1.0, 5.0, 2.0]):
        with torch.no_grad():
            net.weight.fill_(w)
        ema.update(net)
        d = min(0.5, (1 + n) / (10 + n))  # 0.1, 2/11, 3/12, 4/13: the warm-up of the decay
        avg = d * avg + (1 - d) * w
        assert ema.shadow[0].item() == pytest.approx(avg)
    with ema.swapped_in(net):
        assert net.weight.item() == pytest.approx(avg)
    assert net.weight.item() == 2.0  # the trained weight is back
    state = ema.state_dict()
    other = WeightEma(net, decay=0.5)
    other.load_state_dict(state)
    assert other.updates == 4 and other.shadow[0].item() == pytest.approx(avg)


def test_label_smoothing_is_the_smoothed_cross_entropy():
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        logits = net(x)
    # hand-computed: target (1 - e) on the label plus e / K on every class
    e, k = 0.2, 3
    target = F.one_hot(y, k).float() * (1 - e) + e / k
    expected = float(-(target * logits.log_softmax(1)).sum(1).mean())
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    accel = resolve_accelerator(precision="fp32", channels_last=False, accelerator="cpu")
    loss, _ = train_step(net, opt, x, y, micro_batch=3, accel=accel, label_smoothing=e)
    assert loss == pytest.approx(expected, rel=1e-5)


RECIPE = dict(
    epochs=3,
    lr_schedule="cosine",
    warmup_epochs=1,
    ema_decay=0.9,
    label_smoothing=0.1,
)


class _Interrupted(Exception):
    pass


def test_resume_in_the_middle_of_a_schedule_is_bit_identical(tmp_path, monkeypatch, tiny_run):
    tiny = {**tiny_run, **RECIPE}
    whole = train(RunConfig(**tiny), tmp_path / "whole", progress=False)
    assert [h["lr"] for h in whole.history][-1] == 0.0  # cosine ends at 0

    real_wait = RunDir.wait_for_verdict

    def crash_after_epoch_2(self, epoch):
        if epoch == 2:
            raise _Interrupted
        return real_wait(self, epoch)

    monkeypatch.setattr(RunDir, "wait_for_verdict", crash_after_epoch_2)
    with pytest.raises(_Interrupted):
        train(RunConfig(**tiny), tmp_path / "broken", progress=False)
    monkeypatch.setattr(RunDir, "wait_for_verdict", real_wait)
    resumed = train(None, tmp_path / "broken", resume=True, progress=False)

    assert resumed.resumed and not whole.resumed
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in whole.history]
    a = RunDir(tmp_path / "whole").load_state("tested")["model"]
    b = RunDir(tmp_path / "broken").load_state("tested")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.test_accuracy == whole.test_accuracy


def test_the_tested_model_is_the_average(tmp_path, tiny_run):
    tiny = {**tiny_run, **RECIPE}
    record = train(RunConfig(**{**tiny, "epochs": 2}), tmp_path / "run", progress=False)
    run = RunDir(tmp_path / "run")
    tested = run.load_state("tested")["model"]
    saved = run.load_state("checkpoint")
    averaged, trained = saved["ema"]["tensors"], saved["model"]
    weight = next(k for k in tested if k.endswith("weight") and tested[k].dim() == 4)
    assert torch.equal(tested[weight], averaged[weight])
    assert not torch.equal(tested[weight], trained[weight])
    assert record.config["ema_decay"] == 0.9


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"warmup_epochs": 5}, "warmup epochs must be at most"),
        ({"label_smoothing": 1.5}, "label smoothing"),
        ({"ema_decay": 1.0}, "ema decay"),
        ({"lr_schedule": "step"}, "lr_schedule"),
    ],
)
def test_bad_recipe_values_are_refused(change, message, tiny_run):
    tiny = {**tiny_run, **RECIPE}
    with pytest.raises(EdgeTrainError, match=message):
        RunConfig.from_dict({**tiny, **change})


def test_new_fields_at_their_defaults_keep_earlier_run_ids():
    plain = RunConfig(model="xception_lite", data="synthetic-pcb")
    d = plain.to_dict()
    for name in ("lr_schedule", "warmup_epochs", "label_smoothing", "ema_decay", "folds", "fold"):
        d.pop(name)
    import hashlib
    import json

    for name in ("threads", "accelerator"):
        d.pop(name)
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    assert plain.id == "run-" + hashlib.sha256(blob.encode()).hexdigest()[:12]
    assert plain.replace(lr_schedule="cosine").id != plain.id
