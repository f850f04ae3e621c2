"""A tiny trained run and its export, made once for the deploy tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgetrain.train import RunConfig, train

    out = tmp_path_factory.mktemp("deploy") / "run"
    train(RunConfig(**TINY), out, progress=False)
    return out


@pytest.fixture(scope="session")
def exported(tiny_run: Path) -> dict:
    """RUN/model.onnx and RUN/model.int8.onnx, measured with 2 timed calls per batch size."""
    from edgetrain.deploy.export import export_run

    # int8_anyway: the int8 mechanics are under test here, the accuracy gate in its own tests
    return export_run(tiny_run, int8=True, int8_anyway=True, calibration_count=16, repeat=2)


def _write_image(
    path: Path, array: np.ndarray, mode: str = "RGB", exif_orientation: int = 0
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array).convert(mode)
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        im.save(path, exif=exif, quality=95)
    else:
        im.save(path, quality=95)
    return path


@pytest.fixture(name="write_image")
def write_image_fixture():
    """write_image(path, array, mode="RGB", exif_orientation=0) -> path"""
    return _write_image


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A folder with an RGB JPEG, a CMYK JPEG, an EXIF-rotated JPEG and a corrupt file."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    _write_image(folder / "rgb.jpg", rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    _write_image(folder / "cmyk.jpg", rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), "CMYK")
    _write_image(
        folder / "sub" / "rotated.jpg",
        rng.integers(0, 256, (30, 60, 3), dtype=np.uint8),
        exif_orientation=6,
    )
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return folder
