"""Export: ONNX checker, parity with PyTorch, sidecar, int8, record figures, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgetrain.cli import main
from edgetrain.deploy.export import PARITY_MAX_ABS_DIFF, real_images
from edgetrain.deploy.runmodel import load_run_model
from edgetrain.deploy.runtime import load_onnx
from edgetrain.deploy.sidecar import parse_sidecar, sidecar_path
from edgetrain.errors import EdgeTrainError
from edgetrain.preprocess import normalize
from edgetrain.train.rundir import RunDir


def test_export_reproduces_pytorch(tiny_run: Path, exported: dict) -> None:
    onnx_path = Path(exported["onnx"])
    onnx.checker.check_model(str(onnx_path), full_check=True)
    assert exported["parity_max_abs_diff"] <= PARITY_MAX_ABS_DIFF
    assert exported["parity_top1_equal"] and exported["parity_source"].startswith("test split")
    # independently: real test images at batch sizes the export did not use (dynamic batch)
    rm, om = load_run_model(tiny_run), load_onnx(onnx_path)
    x = np.ascontiguousarray(normalize(real_images(rm, "test", 5)))
    for b in (1, 3, 5):
        ref, got = rm.logits(x[:b]), om.logits(x[:b])
        assert got.shape == (b, 6)
        assert np.abs(ref - got).max() <= PARITY_MAX_ABS_DIFF
        assert (ref.argmax(1) == got.argmax(1)).all()


def test_sidecar_and_record(tiny_run: Path, exported: dict) -> None:
    side = json.loads(sidecar_path(exported["onnx"]).read_text())
    assert side["classes"] == RunDir(tiny_run).load_record().classes
    assert side["resolution"] == 32 and side["precision"] == "fp32"
    assert side["model"] == "xception_lite" and side["spec_id"] and len(side["onnx_sha256"]) == 64
    assert json.loads(sidecar_path(exported["onnx_int8"]).read_text())["precision"] == "int8"
    record = RunDir(tiny_run).load_record()
    assert record.onnx_file_mb == pytest.approx(exported["onnx_file_mb"])
    assert record.onnx_int8_file_mb < record.onnx_file_mb / 2
    assert record.onnx_latency_ms_b1 > 0 and record.onnx_latency_ms_b16 > 0
    assert record.onnx_int8_latency_ms_b1 > 0 and record.infer_peak_rss_mb > 0
    assert 0 <= record.onnx_int8_test_accuracy <= 1
    # fp32 ONNX has the same test accuracy as the PyTorch model the run tested
    assert record.onnx_test_accuracy == pytest.approx(record.test_accuracy)


def test_run_without_checkpoint_is_one_line_and_exit_2(
    tiny_run: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "half"
    run.mkdir()
    shutil.copy(tiny_run / "config.json", run / "config.json")
    assert main(["export", str(run), "--no-measure"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no checkpoint" in err


def test_onnx_without_sidecar_or_with_wrong_one(exported: dict, tmp_path: Path) -> None:
    lone = tmp_path / "lone.onnx"
    shutil.copy(exported["onnx"], lone)
    with pytest.raises(EdgeTrainError, match="no sidecar"):
        load_onnx(lone)
    side = json.loads(sidecar_path(exported["onnx"]).read_text())
    sidecar_path(lone).write_text(json.dumps({**side, "classes": ["a", "b", "c"]}))
    with pytest.raises(EdgeTrainError, match="class count mismatch"):
        load_onnx(lone)
    sidecar_path(lone).write_text(json.dumps({**side, "onnx_sha256": "0" * 64}))
    with pytest.raises(EdgeTrainError, match="does not match its sidecar"):
        load_onnx(lone)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format": "other"}, "not an edgetrain sidecar"),
        ({"resolution": "224"}, "resolution"),
        ({"classes": ["a", "a"]}, "classes"),
        ({"scale": float("nan")}, "scale"),
        ({"precision": "fp8"}, "precision"),
    ],
)
def test_sidecar_validation(change: dict, message: str) -> None:
    good = {
        "format": "edgetrain-onnx-sidecar",
        "version": 1,
        "classes": ["a", "b"],
        "resolution": 32,
    }
    assert parse_sidecar(good).num_classes == 2
    with pytest.raises(EdgeTrainError, match=message):
        parse_sidecar({**good, **change})
