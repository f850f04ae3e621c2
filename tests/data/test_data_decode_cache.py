"""Decoding (modes, EXIF orientation, crops) and the decode-once cache (keys, staleness, safety)."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import edgetrain.data.decode as decode_mod
from edgetrain.data import load_split, resolve
from edgetrain.data.cache import default_cache_dir
from edgetrain.data.decode import decode, probe, to_rgb

R = 16


def _save(path: Path, im: Image.Image, fmt: str, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, fmt, **kw)
    return path


@pytest.mark.parametrize(
    ("mode", "fmt", "ext"),
    [
        ("L", "PNG", "png"),
        ("1", "PNG", "png"),
        ("P", "PNG", "png"),
        ("RGBA", "PNG", "png"),
        ("LA", "PNG", "png"),
        ("CMYK", "JPEG", "jpg"),
        ("I;16", "PNG", "png"),
        ("RGB", "WEBP", "webp"),
        ("RGB", "BMP", "bmp"),
        ("L", "TIFF", "tif"),
    ],
)
def test_every_mode_decodes_to_rgb(tmp_path: Path, mode: str, fmt: str, ext: str) -> None:
    src = Image.new("RGB", (24, 20), (200, 100, 50)).convert(mode)
    path = _save(tmp_path / f"x.{ext}", src, fmt)
    (arr,) = decode(path, resolution=R)
    assert arr.shape == (R, R, 3) and arr.dtype == np.uint8
    assert probe(path).mode == Image.open(path).mode


def test_sixteen_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    a = np.full((8, 8), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    path = _save(tmp_path / "g16.png", Image.fromarray(a), "PNG")
    (arr,) = decode(path, resolution=8)
    assert np.all(np.abs(arr.astype(int) - 128) <= 1)


def test_alpha_is_composited_over_white() -> None:
    im = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    assert np.asarray(to_rgb(im))[0, 0].tolist() == [255, 255, 255]
    im = Image.new("RGBA", (4, 4), (255, 0, 0, 255))
    assert np.asarray(to_rgb(im))[0, 0].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored 40 x 20 with the left half black; orientation 6 = view rotated 90 degrees clockwise.
    a = np.full((20, 40, 3), 255, dtype=np.uint8)
    a[:, :20] = 0
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(tmp_path / "rot.jpg", Image.fromarray(a), "JPEG", exif=exif, quality=95)
    info = probe(path)
    assert (info.width, info.height) == (20, 40)  # as viewed
    (arr,) = decode(path, resolution=8)
    top, bottom = arr[:3].mean(), arr[-3:].mean()
    assert top < 60 and bottom > 200  # black half is now on top


def test_crops_come_from_the_right_place_and_draft_keeps_them(tmp_path: Path) -> None:
    a = np.zeros((800, 1000, 3), dtype=np.uint8)
    a[100:300, 600:800] = (255, 0, 0)  # a red square
    path = _save(tmp_path / "board.jpg", Image.fromarray(a), "JPEG", quality=95)
    red, black = decode(path, resolution=16, crops=[(600, 100, 800, 300), (0, 400, 200, 600)])
    assert red[..., 0].mean() > 230 and red[..., 1].mean() < 30
    assert black.max() < 30


def test_decode_of_garbage_raises_badimage(tmp_path: Path) -> None:
    from edgetrain.data.decode import BadImage

    p = tmp_path / "x.jpg"
    p.write_bytes(b"GIF89a\x00")
    with pytest.raises(BadImage):
        decode(p, resolution=R)


# --- cache ---------------------------------------------------------------------------------


def test_cache_dir_default_and_env(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGETRAIN_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("EDGETRAIN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "edgetrain"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "edgetrain"


def _count_decodes(monkeypatch) -> list[int]:
    calls = [0]
    real = decode_mod.decode

    def counting(*a, **kw):
        calls[0] += 1
        return real(*a, **kw)

    monkeypatch.setattr(decode_mod, "decode", counting)  # decode_records looks it up there
    return calls


def test_second_load_reads_the_cache(make_classes, cache_dir, monkeypatch) -> None:
    root = make_classes({"a": 10, "b": 10})
    s = resolve(f"folder:{root}")
    calls = _count_decodes(monkeypatch)
    x1, y1 = load_split(s, "train", resolution=R, cache_dir=cache_dir)
    assert calls[0] == 16 and x1.shape == (16, 3, R, R) and x1.dtype == torch.uint8
    assert y1.dtype == torch.int64 and y1.tolist() == [r.label for r in s.train]
    x2, y2 = load_split(resolve(f"folder:{root}"), "train", resolution=R, cache_dir=cache_dir)
    assert calls[0] == 16  # nothing decoded again
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    files = list((cache_dir / "data").iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"  # no temporary files left behind
    blob = torch.load(files[0], weights_only=True)  # safe to load: tensors and plain types only
    assert set(blob) == {"format", "key", "images", "labels", "skipped"}


def test_changed_file_settings_or_split_invalidate_the_cache(
    make_classes, cache_dir, monkeypatch, write_image
) -> None:
    root = make_classes({"a": 10, "b": 10})
    s = resolve(f"folder:{root}")
    calls = _count_decodes(monkeypatch)
    load_split(s, "train", resolution=R, cache_dir=cache_dir)
    n = calls[0]
    load_split(s, "train", resolution=R + 8, cache_dir=cache_dir)  # other resolution
    assert calls[0] == 2 * n
    victim = Path(s.train[0].path)
    write_image(victim, seed=999)  # new content ...
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # ... and a newer mtime
    x, _ = load_split(s, "train", resolution=R, cache_dir=cache_dir)
    assert calls[0] == 3 * n  # stale cache not used
    (fresh,) = decode(victim, resolution=R)
    assert torch.equal(x[0], torch.from_numpy(fresh).permute(2, 0, 1))
    other = resolve(f"folder:{root}", seed=1)  # another split of the same files
    load_split(other, "train", resolution=R, cache_dir=cache_dir)
    assert calls[0] == 4 * n


def test_corrupt_cache_file_is_rebuilt(make_classes, cache_dir) -> None:
    s = resolve(f"folder:{make_classes({'a': 5, 'b': 5})}")
    x1, _ = load_split(s, "train", resolution=R, cache_dir=cache_dir)
    (path,) = (cache_dir / "data").iterdir()
    path.write_bytes(b"not a torch file")
    x2, _ = load_split(s, "train", resolution=R, cache_dir=cache_dir)
    assert torch.equal(x1, x2)
    torch.load(path, weights_only=True)  # rewritten, loadable


def test_unwritable_cache_still_returns_images(make_classes, tmp_path: Path) -> None:
    s = resolve(f"folder:{make_classes({'a': 5, 'b': 5})}")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")
    x, y = load_split(s, "train", resolution=R, cache_dir=blocker)
    assert x.shape[0] == len(y) == 8


def test_default_cache_location_follows_env(make_classes, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EDGETRAIN_CACHE", str(tmp_path / "envcache"))
    s = resolve(f"folder:{make_classes({'a': 5, 'b': 5})}")
    load_split(s, "test", resolution=R)
    assert len(list((tmp_path / "envcache" / "data").glob("*.pt"))) == 1


def test_empty_val_split_loads_as_empty_tensors(make_classes, cache_dir) -> None:
    s = resolve(f"folder:{make_classes({'a': 5, 'b': 5})}")
    x, y = load_split(s, "val", resolution=R, cache_dir=cache_dir)
    assert x.shape == (0, 3, R, R) and y.shape == (0,)


def test_bad_resolution_is_an_error(make_classes, cache_dir) -> None:
    from edgetrain.errors import EdgeTrainError

    s = resolve(f"folder:{make_classes({'a': 5, 'b': 5})}")
    with pytest.raises(EdgeTrainError, match="resolution"):
        load_split(s, "train", resolution=0, cache_dir=cache_dir)
    with pytest.raises(EdgeTrainError, match="unknown split"):
        load_split(s, "holdout", resolution=R, cache_dir=cache_dir)


def test_progress_bar_runs(make_classes, cache_dir, capsys) -> None:
    s = resolve(f"folder:{make_classes({'a': 5, 'b': 5})}")
    load_split(s, "train", resolution=R, cache_dir=cache_dir, progress=True)
    assert "decoding train" in capsys.readouterr().err


def test_pku_crops_decode_each_board_once(make_pku, cache_dir, monkeypatch) -> None:
    s = resolve(f"pku-pcb:{make_pku()}")
    calls = _count_decodes(monkeypatch)
    x, _ = load_split(s, "train", resolution=R, cache_dir=cache_dir)
    assert x.shape[0] == len(s.train)
    assert calls[0] == len({r.path for r in s.train}) == len(s.train) // 2


def test_synthetic_split_renders_without_cache(cache_dir) -> None:
    s = resolve("synthetic-pcb:per_class=10")
    x, y = load_split(s, "train", resolution=24, cache_dir=cache_dir)
    assert x.shape == (48, 3, 24, 24) and x.dtype == torch.uint8
    assert y.tolist() == [r.label for r in s.train]
    assert not cache_dir.exists()
    sized = resolve("synthetic-pcb:per_class=10,size=32")
    x32, _ = load_split(sized, "train", resolution=24, cache_dir=cache_dir)
    assert x32.shape == (48, 3, 24, 24)


def test_subset_of_records_decodes_identically(make_classes, cache_dir) -> None:
    s = resolve(f"folder:{make_classes({'a': 10, 'b': 10})}")
    x, _ = load_split(s, "train", resolution=R, cache_dir=cache_dir)
    part = dataclasses.replace(s, train=s.train[3:5])
    xp, _ = load_split(part, "train", resolution=R, cache_dir=cache_dir)
    assert torch.equal(xp, x[3:5])


def test_jpeg_bytes_helper_is_a_jpeg(image_bytes) -> None:
    assert Image.open(io.BytesIO(image_bytes())).format == "JPEG"


def test_relative_ref_survives_a_change_of_directory(make_classes, cache_dir, monkeypatch) -> None:
    root = make_classes({"a": 5, "b": 5})
    monkeypatch.chdir(root.parent)
    s = resolve(f"folder:{root.name}")
    assert s.name == f"folder:{root.name}"  # the ref keeps what the user wrote
    monkeypatch.chdir("/")
    x, _ = load_split(s, "train", resolution=R, cache_dir=cache_dir)
    assert x.shape[0] == 8
