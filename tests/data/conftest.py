"""Fixtures for the data tests: tiny image folders and VOC boards built in tmp_path.

The real data's path is the `shared_data` fixture of tests/conftest.py (skips where absent).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _image_bytes(
    size: tuple[int, int] = (40, 30), mode: str = "RGB", fmt: str = "JPEG", seed: int = 0
) -> bytes:
    """An encoded image with random smooth content (so JPEG keeps it recognisable)."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    im = Image.fromarray(base, "RGB").resize((w, h), Image.Resampling.BILINEAR)
    if mode != "RGB":
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def _write_image(path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_image_bytes(**kwargs))
    return path


@pytest.fixture
def image_bytes() -> Callable[..., bytes]:
    """image_bytes(size=(w, h), mode="RGB", fmt="JPEG", seed=0) -> encoded image."""
    return _image_bytes


@pytest.fixture
def write_image() -> Callable[..., Path]:
    """write_image(path, size=..., mode=..., fmt=..., seed=...) -> path (folders created)."""
    return _write_image


@pytest.fixture
def voc_xml() -> Callable[..., str]:
    """voc_xml(filename, cls, [(name, x0, y0, x1, y1), ...], w=200, h=160) -> VOC XML text."""
    return _voc_xml


@pytest.fixture
def make_classes(tmp_path: Path) -> Callable[..., Path]:
    """make_classes({"cat": 10, "dog": 12}, root="ds") -> folder of class folders of JPEGs."""

    def make(counts: dict[str, int], root: str = "ds", name: str = "img_{i:03d}.jpg") -> Path:
        base = tmp_path / root
        for k, (cls, n) in enumerate(counts.items()):
            for i in range(n):
                _write_image(base / cls / name.format(i=i, cls=cls), seed=100 * k + i)
        base.mkdir(parents=True, exist_ok=True)
        return base

    return make


VOC = """<annotation>
  <folder>{cls}</folder>
  <filename>{filename}</filename>
  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>
  {objects}
</annotation>
"""
OBJ = """<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>
<ymax>{y1}</ymax></bndbox></object>"""


def _voc_xml(
    filename: str, cls: str, boxes: list[tuple[str, int, int, int, int]], w: int = 200, h: int = 160
) -> str:
    objects = "\n".join(
        OBJ.format(name=n, x0=x0, y0=y0, x1=x1, y1=y1) for n, x0, y0, x1, y1 in boxes
    )
    return VOC.format(cls=cls, filename=filename, w=w, h=h, objects=objects)


@pytest.fixture
def make_pku(tmp_path: Path) -> Callable[..., Path]:
    """A miniature PKU-Market-PCB: boards of 200 x 160 px from several templates, 2 boxes each."""

    def make(
        classes: tuple[str, ...] = ("Missing_hole", "Short", "Spur"),
        templates: tuple[str, ...] = ("01", "02", "03", "04", "05"),
    ) -> Path:
        root = tmp_path / "pku"
        for k, cls in enumerate(classes):
            for j, tpl in enumerate(templates):
                stem = f"{tpl}_{cls.lower()}_01"
                _write_image(
                    root / "images" / cls / f"{stem}.jpg", size=(200, 160), seed=10 * k + j
                )
                xml = _voc_xml(
                    f"{stem}.jpg",
                    cls,
                    [(cls.lower(), 20, 30, 50, 50), (cls.lower(), 150, 120, 190, 155)],
                )
                (root / "Annotations" / cls).mkdir(parents=True, exist_ok=True)
                (root / "Annotations" / cls / f"{stem}.xml").write_text(xml)
        return root

    return make
