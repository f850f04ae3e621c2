"""Issue 14, item 7: class folders and files whose names are not UTF-8 (bytes like b'caf\\xe9',
which Python on Linux reads as surrogate escapes) resolve, split, cache and inspect like any
other; ordinary names keep their seeds and cache keys."""

from __future__ import annotations

import json
import os
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from edgetrain.cli import main
from edgetrain.data import load_split, resolve
from edgetrain.data.cache import cache_key
from edgetrain.data.splits import _class_rng, name_bytes

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="names are bytes only on Linux file systems"
)

LATIN1_CLASS = os.fsdecode(b"caf\xe9")  # 'caf\udce9': a folder named in Latin-1


def _bytes_dataset(tmp_path: Path, write_image) -> Path:
    root = tmp_path / "names"
    for k, cls in enumerate((b"caf\xe9", b"plain", "na\u00efve".encode())):
        for i in range(5):
            name = os.fsdecode(b"img_\xff%d.jpg" % i) if k == 0 else f"img_{i}.jpg"
            write_image(root / os.fsdecode(cls) / name, seed=10 * k + i)
    return root


def test_non_utf8_class_and_file_names_resolve_load_and_inspect(
    tmp_path, write_image, cache_dir, capsys
) -> None:
    root = _bytes_dataset(tmp_path, write_image)
    s = resolve(f"folder:{root}")
    assert LATIN1_CLASS in s.classes
    assert sum(s.counts().values()) == 15
    for split in ("train", "val", "test"):
        _, labels = load_split(s, split, resolution=16, cache_dir=cache_dir)
        assert len(labels) == s.counts()[split]
    again = resolve(f"folder:{root}")
    images2, _ = load_split(again, "train", resolution=16, cache_dir=cache_dir)  # from the cache
    assert images2.shape[0] == s.counts()["train"]
    ref = f"folder:{root}"
    assert main(["data", "inspect", ref, "--json", "--decode", "--cache-dir", str(cache_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert LATIN1_CLASS in out["classes"]
    assert main(["data", "inspect", ref, "--sheet", str(tmp_path / "sheet.png")]) == 0
    assert (tmp_path / "sheet.png").stat().st_size > 0


def test_ordinary_names_keep_their_seeds_and_cache_keys(make_classes) -> None:
    # name_bytes is str.encode() for every name without undecodable bytes.
    for name in ("cat", "na\u00efve", "\u732b", "a b", "\U0001f600"):
        assert name_bytes(name) == name.encode()
        a = _class_rng(3, name).permutation(50)
        b = np.random.default_rng([3, zlib.crc32(name.encode())]).permutation(50)
        assert (a == b).all()
    assert name_bytes(LATIN1_CLASS) == b"caf\xe9" == os.fsencode(LATIN1_CLASS)
    root = make_classes({"cat": 4, "na\u00efve": 4})
    s = resolve(f"folder:{root}")
    # The key as it was computed before non-UTF-8 names were handled.
    import hashlib

    import PIL

    from edgetrain.data.cache import CACHE_FORMAT

    h = hashlib.sha256()
    settings = {
        "format": CACHE_FORMAT,
        "resolution": 32,
        "resample": "bilinear",
        "pillow": PIL.__version__,
        "classes": s.classes,
    }
    h.update(json.dumps(settings, sort_keys=True).encode())
    for r in s.train:
        st = os.stat(r.path)
        h.update(f"{r.path}\0{st.st_size}:{st.st_mtime_ns}\0{r.crop}\0{r.label}\n".encode())
    assert cache_key(s, "train", s.train, 32) == h.hexdigest()


def test_non_utf8_names_get_distinct_seeds_and_keys(tmp_path, write_image) -> None:
    root = _bytes_dataset(tmp_path, write_image)
    s = resolve(f"folder:{root}")
    key = cache_key(s, "train", s.train, 32)
    assert len(key) == 64
    # Two names that differ only in an undecodable byte shuffle differently.
    a = _class_rng(0, os.fsdecode(b"x\xe9")).permutation(50)
    b = _class_rng(0, os.fsdecode(b"x\xe8")).permutation(50)
    assert (a != b).any()
