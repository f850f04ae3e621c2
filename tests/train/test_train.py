"""End-to-end training on synthetic-pcb: the record, resume after SIGKILL, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgetrain import EdgeTrainError
from edgetrain.cli import main
from edgetrain.train import RunConfig, train
from edgetrain.train.engine import TrainingDiverged

TINY_DATA = "synthetic-pcb:per_class=8,size=32"
# a small Xception-Lite: 1 middle block instead of 8, so a step at 32 px takes milliseconds
TINY = dict(
    model="xception_lite",
    model_args={"middle_depth": 1},
    data=TINY_DATA,
    resolution=32,
    batch_size=8,
    epochs=2,
    threads=1,
    latency_repeat=3,
)

RECORD_KEYS = {
    "test_accuracy",
    "peak_rss_mb",
    "mean_rss_mb",
    "baseline_rss_mb",
    "peak_above_baseline_mb",
    "analytic_mb",
    "analytic",
    "system_ram_permille",
    "train_step_ms",
    "epoch_s",
    "infer_latency_ms_b1",
    "infer_latency_ms_b16",
    "params_trainable",
    "config",
}


def test_tiny_end_to_end(tmp_path):
    record = train(RunConfig(**TINY), tmp_path / "run", progress=False)
    assert set(record.to_dict()) >= RECORD_KEYS
    assert 0.0 <= record.test_accuracy <= 1.0
    assert record.peak_rss_mb >= record.baseline_rss_mb > 0
    assert record.peak_above_baseline_mb >= 0
    parts = record.analytic
    assert parts["weights_mb"] > 0 and parts["grads_mb"] > 0 and parts["optimizer_mb"] > 0
    assert parts["saved_activations_mb"] > 0
    # Adam keeps two moments per parameter: its state is at least twice the gradients
    assert parts["optimizer_mb"] >= 2 * parts["grads_mb"]
    assert 0 < record.system_ram_permille < 1000
    assert record.train_step_ms > 0 and record.infer_latency_ms_b1 > 0
    assert len(record.history) == 2
    cm = record.test_confusion
    assert sum(map(sum, cm)) == record.split_counts["test"]
    run = tmp_path / "run"
    for name in (
        "config.json",
        "record.json",
        "history.csv",
        "rss.csv",
        "checkpoint.pt",
        "curves.png",
        "rss.png",
    ):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["model_args"] == {"middle_depth": 1}
    with pytest.raises(EdgeTrainError, match="already holds a run"):
        train(RunConfig(**TINY), run, progress=False)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgetrain", "train", "--no-progress", *args]


def _tiny_args(out: Path, epochs: int) -> list[str]:
    return [
        "--model",
        "xception_lite",
        "--model-arg",
        "middle_depth=1",
        "--data",
        "synthetic-pcb:per_class=24,size=32",
        "--resolution",
        "32",
        "--batch-size",
        "8",
        "--epochs",
        str(epochs),
        "--threads",
        "1",
        "--latency-repeat",
        "3",
        "--out",
        str(out),
    ]


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    subprocess.run(_cli(*_tiny_args(whole, 4)), check=True, env=env, capture_output=True)

    child = subprocess.Popen(
        _cli(*_tiny_args(broken, 4)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    hist = broken / "history.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if hist.exists() and len(hist.read_text().splitlines()) >= 2:  # header + epoch 1
            break
        time.sleep(0.01)
    assert child.poll() is None, "the run ended before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (broken / "record.json").exists()

    subprocess.run(_cli("--resume", "--out", str(broken)), check=True, env=env, capture_output=True)
    a = json.loads((whole / "record.json").read_text())
    b = json.loads((broken / "record.json").read_text())
    assert b["resumed"] is True and a["resumed"] is False
    assert b["test_accuracy"] == a["test_accuracy"]
    assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-6)
    assert [h["train_loss"] for h in b["history"]] == pytest.approx(
        [h["train_loss"] for h in a["history"]], rel=1e-6
    )


def test_divergence_names_step_and_checkpoint(tmp_path):
    cfg = RunConfig(**{**TINY, "lr": 100.0, "optimizer": "sgd", "epochs": 3})
    with pytest.raises(TrainingDiverged, match=r"epoch \d+, step \d+/\d+.*checkpoint"):
        train(cfg, tmp_path / "run", progress=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "xceptoin", "--data", "synthetic-pcb"], "unknown model"),
        (["--model", "xception", "--data", "synthetic-pcb", "--resolution", "8"], "resolution"),
        (["--model", "xception", "--data", "synthetic-pcb", "--batch-size", "0"], "batch size"),
        (["--model", "xception", "--data", "caltech101:/no/such/dir"], "/no/such/dir"),
        (["--model", "xception"], "--data"),
        (["--resume"], "--out"),
    ],
)
def test_bad_config_fails_before_training(tmp_path, capsys, args, message):
    assert (
        main(
            ["train", "--no-progress", "--out", str(tmp_path / "r"), *args]
            if "--resume" not in args
            else ["train", *args]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_resume_refuses_new_flags(tmp_path, capsys):
    assert main(["train", "--resume", "--out", str(tmp_path), "--epochs", "3"]) == 2
    assert "saved config" in capsys.readouterr().err
