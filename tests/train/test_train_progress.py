"""Training progress without a terminal: plain lines as training goes, never a cut bar at the end."""

from __future__ import annotations

import io
import subprocess
import sys

from rich.console import Console

from edgetrain.train.progress import TrainProgress


def _lines(every_s: float) -> list[str]:
    log = io.StringIO()  # not a terminal, as a log file under a service manager
    bar = TrainProgress(
        enabled=True, epochs=2, steps=3, console=Console(file=log, width=80), line_every_s=every_s
    )
    with bar:
        for epoch in range(2):
            bar.start_epoch(epoch)
            for _ in range(3):
                bar.step(loss=1.25, acc=0.5, img_s=120.0, rss_mb=812.0)
            bar.end_epoch({"epoch": epoch + 1, "val_accuracy": 0.75, "epoch_s": 1.0,
                           "peak_rss_mb": 900.0})  # fmt: skip
    return log.getvalue().splitlines()


def test_without_a_terminal_progress_is_plain_lines():
    lines = _lines(every_s=0.0)
    steps = [line for line in lines if line.startswith("epoch ")]
    assert len(steps) == 6  # every step, at this interval
    assert steps[0].startswith("epoch 1/2 step 1/3  loss 1.2500  acc 0.500  120.0 img/s")
    assert "RSS 812 MB" in steps[0] and "left in the epoch" in steps[0]
    assert any("epoch 1: val acc 0.750" in line for line in lines)
    assert not any("━" in line or "…" in line for line in lines)  # no bar, nothing cut


def test_plain_lines_come_every_few_seconds_and_at_each_epochs_end():
    steps = [line for line in _lines(every_s=3600.0) if line.startswith("epoch ")]
    assert [s.split("  ")[0] for s in steps] == ["epoch 1/2 step 3/3", "epoch 2/2 step 3/3"]


def test_train_with_stderr_to_a_file_prints_steps(tmp_path):
    cmd = [sys.executable, "-m", "edgetrain", "train", "--model", "xception_lite", "--data",
           "synthetic-pcb:per_class=8,size=32", "--resolution", "32", "--epochs", "1",
           "--threads", "1", "--out", str(tmp_path / "run")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "epoch 1/1 step " in proc.stderr and "━" not in proc.stderr
