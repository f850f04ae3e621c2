"""Evaluate on a folder of class folders: metrics agree with predict, files are written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgetrain.cli import main
from edgetrain.deploy.evaluate import evaluate, metrics_of
from edgetrain.deploy.predict import load_predictor, predict_files
from edgetrain.errors import EdgeTrainError


@pytest.fixture
def class_folders(tmp_path: Path, write_image) -> Path:
    rng = np.random.default_rng(1)
    root = tmp_path / "pcb"
    for name in ("Short", "Spur"):
        for i in range(4):
            write_image(root / name / f"{i}.png", rng.integers(0, 256, (36, 36, 3), dtype=np.uint8))
    return root


@pytest.mark.parametrize("which", ["onnx", "run"])
def test_evaluate_folder(which: str, tiny_run: Path, exported: dict, class_folders: Path, tmp_path):
    model = exported["onnx"] if which == "onnx" else str(tiny_run)
    out = tmp_path / "eval"
    result = evaluate(model, data=f"folder:{class_folders}", split="all", out_dir=out)
    assert result["images"] == 8
    predicted = predict_files(load_predictor(model), [class_folders])
    expected = np.mean([Path(p.file).parent.name == p.top[0][0] for p in predicted.predictions])
    assert result["accuracy"] == pytest.approx(expected)
    assert set(result["per_class_accuracy"]) == set(load_predictor(model).classes)
    assert result["per_class_accuracy"]["Missing_hole"] is None  # not in this data
    for name in ("metrics.json", "confusion.png"):
        assert (out / name).is_file()
    assert (out / "misclassified.png").is_file() == bool(result["misclassified"])
    assert json.loads((out / "metrics.json").read_text())["images"] == 8


def test_unknown_class_is_exit_2(exported: dict, tmp_path: Path, capsys, write_image) -> None:
    for name in ("Scratch", "Short"):
        for i in range(2):
            write_image(tmp_path / "d" / name / f"{i}.png", np.full((8, 8, 3), i, np.uint8))
    ref = f"folder:{tmp_path / 'd'}"
    assert main(["evaluate", exported["onnx"], "--data", ref, "--split", "all"]) == 2
    assert "class mismatch" in capsys.readouterr().err


def test_metrics_of() -> None:
    m = metrics_of(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ["a", "b", "c"])
    assert m["accuracy"] == 0.75 and m["confusion"] == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    assert m["per_class_accuracy"] == {"a": 0.5, "b": 1.0, "c": None}
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    with pytest.raises(EdgeTrainError):
        from edgetrain.deploy.evaluate import remap_labels

        remap_labels(np.array([0]), ["z"], ["a"])
