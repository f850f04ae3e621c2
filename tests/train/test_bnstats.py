"""BatchNorm recalibration: exact statistics of the sample, frozen layers kept, nothing else moved;
the engine records the as-trained and the recalibrated accuracy and tests what it exports."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgetrain.deploy.runmodel import load_run_model
from edgetrain.train import RunConfig, train
from edgetrain.train.accelerator import Accelerator
from edgetrain.train.bnstats import (
    calibration_loader,
    recalibrate,
    recalibrated_layers,
    restore,
    snapshot,
)
from edgetrain.train.checkpoint import load_checkpoint

CPU = Accelerator()


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=0.001), nn.ReLU(), nn.Dropout(0.5),
        nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2, momentum=0.001),
    )  # fmt: skip


def _images(n=24, res=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, res, res), dtype=torch.uint8, generator=g), torch.zeros(
        n, dtype=torch.int64
    )


def test_recalibration_gives_the_samples_exact_statistics():
    net, (images, labels) = _net(), _images()
    # one batch holds the whole sample: the cumulative average is the exact mean and variance
    loader = calibration_loader(
        images, labels, count=24, batch_size=32, seed=0, channels_last=False
    )
    assert recalibrate(net, loader, [], CPU) == 2
    x = images.float() / 127.5 - 1
    h = net[0](x)
    bn = net[1]
    assert torch.allclose(bn.running_mean, h.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, h.var((0, 2, 3), unbiased=True), atol=1e-4)
    # the second layer sees the first one normalised with batch statistics, as in training
    assert bn.momentum == 0.001 and net[5].momentum == 0.001
    assert all(m.training for m in net.modules())  # training flags put back


def test_flags_and_frozen_layers_are_kept():
    net, (images, labels) = _net(), _images()
    net.train()
    net[5].eval()  # a frozen part keeps eval mode and its statistics
    before = net[5].running_mean.clone()
    loader = calibration_loader(images, labels, count=16, batch_size=8, seed=0, channels_last=False)
    assert recalibrate(net, loader, [net[5]], CPU) == 1
    assert torch.equal(net[5].running_mean, before)
    assert [m.training for m in net] == [True, True, True, True, True, False]
    assert recalibrated_layers(net, [net[5]]) == [net[1]]


def test_snapshot_restore_round_trip_and_weights_untouched():
    net, (images, labels) = _net(), _images()
    layers = recalibrated_layers(net, [])
    saved = snapshot(layers)
    weights = [p.clone() for p in net.parameters()]
    recalibrate(net, calibration_loader(images, labels, count=8, batch_size=4, seed=0,
                                        channels_last=False), [], CPU)  # fmt: skip
    assert not torch.equal(layers[0].running_mean, saved[0]["running_mean"])
    restore(layers, saved)
    assert torch.equal(layers[0].running_mean, saved[0]["running_mean"])
    assert all(torch.equal(a, b) for a, b in zip(weights, net.parameters(), strict=True))


def test_sample_is_fixed_by_seed_and_zero_turns_it_off():
    images, labels = _images(n=50)
    a = calibration_loader(images, labels, count=10, batch_size=4, seed=3, channels_last=False)
    b = calibration_loader(images, labels, count=10, batch_size=4, seed=3, channels_last=False)
    c = calibration_loader(images, labels, count=10, batch_size=4, seed=4, channels_last=False)
    assert torch.equal(a.index, b.index) and not torch.equal(a.index, c.index)
    assert calibration_loader(images, labels, count=0, batch_size=4, seed=3,
                              channels_last=False) is None  # fmt: skip
    everything = calibration_loader(images, labels, count=999, batch_size=4, seed=3,
                                    channels_last=False)  # fmt: skip
    assert len(everything) == 50
    # 50 = 12 * 4 + 2 batches; a lone last image would join the batch before
    assert sum(len(x) for x, _ in everything.epoch()) == 50
    odd = calibration_loader(images, labels, count=9, batch_size=4, seed=3, channels_last=False)
    assert [len(x) for x, _ in odd.epoch()] == [4, 5]


TINY = dict(
    model="mobilenet_v2",
    data="synthetic-pcb:per_class=8,size=32",
    resolution=32,
    batch_size=8,
    epochs=2,
    threads=1,
    latency_repeat=1,
    bn_momentum=0.001,  # running averages that cannot settle in a few steps
)


@pytest.mark.parametrize("images", [0, 32])
def test_engine_records_both_and_exports_what_it_tested(tmp_path, images):
    run = tmp_path / "run"
    record = train(RunConfig(**TINY, bn_recalibration_images=images), run, progress=False)
    assert record.bn_recalibration_images == images
    assert record.precision == "fp32"
    assert all("val_accuracy_as_trained" in row for row in record.history)
    if images == 0:
        assert record.test_accuracy_as_trained == record.test_accuracy
        assert record.history[-1]["val_accuracy_as_trained"] is None
    # the checkpoint keeps the as-trained statistics (resume continues from them) ...
    trained = load_checkpoint(run / "checkpoint.pt")["model"]
    tested = load_checkpoint(run / "tested.pt")["model"]
    key = next(k for k in tested if k.endswith("running_var"))
    assert torch.equal(trained[key], tested[key]) == (images == 0)
    # ... and what export and predict load is what was tested
    assert load_run_model(run).checkpoint.name == "tested.pt"


def test_the_statistics_that_win_on_validation_are_tested():
    from types import SimpleNamespace

    from edgetrain.train.engine import _as_trained_statistics_win

    def state(recal, trained):
        return SimpleNamespace(
            history=[{"val_accuracy": recal, "val_accuracy_as_trained": trained}]
        )

    assert _as_trained_statistics_win(state(0.81, 0.99))  # efficientnet_v2_b0 with EMA, measured
    assert not _as_trained_statistics_win(state(0.96, 0.167))  # mobilenet_v2, Keras BN rate
    assert not _as_trained_statistics_win(state(0.9, 0.9))  # a tie keeps recalibration
    assert not _as_trained_statistics_win(state(None, None))  # no val split
    assert not _as_trained_statistics_win(SimpleNamespace(history=[]))


def test_the_record_names_the_tested_statistics(tmp_path, tiny_run):
    from edgetrain.train import RunConfig, train

    record = train(RunConfig(**{**tiny_run, "data": "synthetic-pcb:per_class=12,size=32"}),
                   tmp_path / "run", progress=False)  # fmt: skip
    assert record.bn_statistics in ("recalibrated", "as trained")
    chosen = (
        record.test_accuracy_as_trained
        if record.bn_statistics == "as trained"
        else record.test_accuracy_recalibrated
    )
    assert record.test_accuracy == chosen
    last = record.history[-1]
    wins = last["val_accuracy_as_trained"] > last["val_accuracy"]
    assert (record.bn_statistics == "as trained") == wins
