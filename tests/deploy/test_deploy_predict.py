"""Predict: a folder with a corrupt, a CMYK and an EXIF-rotated image; the .onnx path imports no
torch; one preprocessing for training and prediction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetrain.cli import main
from edgetrain.deploy.predict import load_predictor, predict_files
from edgetrain.preprocess import load_image

REPO = Path(__file__).resolve().parents[2]


def test_predict_folder_onnx_and_run_agree(tiny_run: Path, exported: dict, image_folder: Path):
    by_onnx = predict_files(load_predictor(exported["onnx"]), [image_folder], top_k=3)
    by_run = predict_files(load_predictor(tiny_run), [image_folder], top_k=3, batch_size=2)
    names = [Path(p.file).name for p in by_onnx.predictions]
    assert names == ["cmyk.jpg", "rgb.jpg", "rotated.jpg"]
    assert [Path(f).name for f, _ in by_onnx.failed] == ["corrupt.jpg"]
    assert "corrupt" in by_onnx.failed[0][1] or "not an image" in by_onnx.failed[0][1]
    for a, b in zip(by_onnx.predictions, by_run.predictions, strict=True):
        assert [c for c, _ in a.top] == [c for c, _ in b.top]
        assert np.allclose([q for _, q in a.top], [q for _, q in b.top], atol=1e-5)
        assert len(a.top) == 3 and a.top[0][1] >= a.top[1][1] >= a.top[2][1]


def test_exif_rotation_and_cmyk_are_applied(image_folder: Path) -> None:
    rotated = load_image(image_folder / "sub" / "rotated.jpg", resolution=32)
    with Image.open(image_folder / "sub" / "rotated.jpg") as im:
        assert im.size == (60, 30)  # stored landscape, viewed portrait (orientation 6)
        upright = im.transpose(Image.Transpose.ROTATE_270).convert("RGB")
        upright = upright.resize((32, 32), Image.Resampling.BILINEAR)
    assert np.array_equal(rotated, np.asarray(upright))
    cmyk = load_image(image_folder / "cmyk.jpg", resolution=32)
    assert cmyk.shape == (32, 32, 3) and cmyk.dtype == np.uint8


def test_cli_outputs(exported: dict, image_folder: Path, tmp_path: Path, capsys) -> None:
    assert main(["predict", exported["onnx"], str(image_folder), "--json", "--top-k", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"] == {"predicted": 3, "failed": 1}
    assert len(out["predictions"][0]["top"]) == 2
    csv_path = tmp_path / "p.csv"
    assert main(["predict", exported["onnx"], str(image_folder), "--csv", str(csv_path)]) == 0
    rows = csv_path.read_text().splitlines()
    assert rows[0] == "file,class_1,prob_1,error" and len(rows) == 5
    assert "corrupt.jpg" in capsys.readouterr().err


def test_onnx_prediction_imports_no_torch(exported: dict, image_folder: Path) -> None:
    code = (
        "import sys, edgetrain; assert 'torch' not in sys.modules, 'import edgetrain'; "
        "from edgetrain.cli import main; "
        f"rc = main(['predict', {exported['onnx']!r}, {str(image_folder)!r}]); "
        "assert rc == 0, rc; assert 'torch' not in sys.modules, 'torch was imported'"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "3 predicted, 1 unreadable" in proc.stdout


def test_missing_model_is_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["predict", str(tmp_path / "nope.onnx"), str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_training_decode_and_predict_give_identical_pixels(image_folder: Path) -> None:
    """The cached training pixels (decode_records) are load_image's, bit for bit."""
    from edgetrain.data.decode import decode_records
    from edgetrain.data.splits import Record

    files = sorted(p for p in image_folder.rglob("*.jpg") if p.name != "corrupt.jpg")
    records = [Record(source=str(p), label=0, path=str(p)) for p in files]
    images, _, skipped = decode_records(records, 32)
    assert not skipped
    for p, x in zip(files, images.numpy(), strict=True):
        assert np.array_equal(x.transpose(1, 2, 0), load_image(p, resolution=32))


@pytest.mark.shared_data
def test_identical_pixels_on_real_images(shared_data: Path) -> None:
    """Real photos (Caltech-101: large, grayscale; PKU crops): training's cached split equals
    load_image file by file, at two resolutions (the JPEG draft path included)."""
    from edgetrain.data import load_split, resolve

    for ref, res in [
        (f"folder:{shared_data / 'pku-market-pcb-crops'}?group=^(\\d+)_", 64),
        (f"caltech101:{shared_data / 'caltech-101'}", 96),
    ]:
        splits = resolve(ref, seed=0)
        records = splits.test[:: max(1, len(splits.test) // 40)]
        splits.test = records
        x, _ = load_split(splits, "test", resolution=res)
        kept = splits.kept("test")
        assert len(kept) == len(x) > 10
        for r, a in zip(kept, x.numpy(), strict=True):
            assert np.array_equal(a.transpose(1, 2, 0), load_image(r.path, resolution=res)), r.path
