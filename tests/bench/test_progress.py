"""A running cell is visible: epoch, step, loss, images/s, RSS and an ETA, read from its run dir."""

from __future__ import annotations

import time

import pytest

import edgetrain.train.subprocess as train_subprocess
from edgetrain.bench.progress import cell_eta_s, cell_status, format_duration
from edgetrain.cli import main
from edgetrain.train.record import RunRecord
from edgetrain.train.rundir import RunDir


def test_eta_from_finished_epochs_or_the_current_pace():
    # first epoch, half done after 30 s: 60 s per epoch, 10 epochs -> 570 s left
    progress = {"epoch": 1, "step": 5, "steps": 10, "epoch_elapsed_s": 30.0}
    assert cell_eta_s([], progress, 10) == pytest.approx(570.0)
    # two epochs done at 40 s each, the third a quarter done: 7.75 epochs left
    progress = {"epoch": 3, "step": 1, "steps": 4, "epoch_elapsed_s": 9.0}
    history = [{"epoch_s": 40.0}, {"epoch_s": 40.0}]
    assert cell_eta_s(history, progress, 10) == pytest.approx(7.75 * 40)
    assert cell_eta_s([], None, 10) is None
    assert format_duration(312) == "5m12s" and format_duration(7322) == "2h02m"


def test_cell_status_reads_what_the_child_wrote(tmp_path):
    run = RunDir(tmp_path)
    assert "preparing" in cell_status(run, 5).text  # nothing written yet
    run.write_history([{"epoch": 1, "train_loss": 0.9, "epoch_s": 20.0, "peak_rss_mb": 300.0}])
    assert run.write_progress(epoch=2, epochs=5, step=3, steps=6, loss=0.5, img_s=42.0,
                              rss_mb=310.0, epoch_elapsed_s=10.0)  # fmt: skip
    assert not run.write_progress(epoch=2, step=4)  # within min_interval_s: skipped
    status = cell_status(run, 5)
    assert status.epochs_done == pytest.approx(1.5)
    assert status.text == ("epoch 2/5  step 3/6  loss 0.5000  42.0 img/s  RSS 310 MB  ETA 1m10s")


def _slow_fake_runner(config, run_dir, resume=False):
    # stands in for the training child: progress within epoch 1, then epoch 1 in history
    run = RunDir(run_dir)
    run.write_progress(min_interval_s=0, epoch=1, epochs=3, step=2, steps=4, loss=0.7,
                       img_s=50.0, rss_mb=321.0, epoch_elapsed_s=1.0)  # fmt: skip
    time.sleep(1.6)
    run.write_history([{"epoch": 1, "train_loss": 0.6, "epoch_s": 2.0, "peak_rss_mb": 330.0}])
    run.write_progress(min_interval_s=0, epoch=2, epochs=3, step=1, steps=4, loss=0.5,
                       img_s=55.0, rss_mb=333.0, epoch_elapsed_s=0.5)  # fmt: skip
    time.sleep(1.6)
    return RunRecord(model=config.model, data=config.data, config=config.to_dict(),
                     test_accuracy=0.5, peak_rss_mb=400.0, mean_rss_mb=350.0,
                     baseline_rss_mb=300.0, peak_above_baseline_mb=100.0, epoch_s=2.0,
                     history=[])  # fmt: skip


def test_bench_prints_the_running_cell(tmp_path, tiny_experiment, capsys, monkeypatch):
    monkeypatch.setattr(train_subprocess, "run_in_subprocess", _slow_fake_runner)
    toml = tiny_experiment(models=("xception_lite",), epochs=3)
    assert main(["bench", str(toml), "--out", str(tmp_path)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # no terminal: lines, wrapped at 80
    assert "seed0: epoch 1/3 step 2/4 loss 0.7000 50.0 img/s RSS 321 MB ETA" in out
    assert "seed0: epoch 2/3 step 1/4 loss 0.5000 55.0 img/s RSS 333 MB ETA" in out
