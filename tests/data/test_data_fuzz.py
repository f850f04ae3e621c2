"""Issue 14: generated malformed inputs through the public data entry points (`resolve`,
`load_split`, `edgetrain data inspect`) give a result, a clean `EdgeTrainError` or exit status 0/2:
never another exception, and never a file written outside the test's temporary folder.

Deterministic: one fixed seed picks the malformations of every case.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetrain.cli import main
from edgetrain.data import SPLIT_NAMES, load_split, resolve
from edgetrain.errors import EdgeTrainError

SEED = 14
N_CASES = 120

# --- writes outside the allowed folder, seen by an audit hook (hooks cannot be removed: a flag) --

_WATCH: dict[str, object] = {"root": None, "bad": []}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {"os.mkdir", "os.remove", "os.rmdir", "os.truncate", "os.chmod", "os.utime"}


def _note_write(path: object) -> None:
    if isinstance(path, int) or path is None:
        return  # a file descriptor: its opening was checked
    p = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
    if "__pycache__" in p or p.endswith(".pyc") or p.startswith("/dev/"):
        return  # the interpreter's byte-code cache, not ours
    root = str(_WATCH["root"])
    if not (p == root or p.startswith(root + os.sep)):
        _WATCH["bad"].append(p)  # type: ignore[union-attr]


def _audit(event: str, args: tuple) -> None:
    if _WATCH["root"] is None:
        return
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if writing:
            _note_write(path)
    elif event == "os.rename":
        _note_write(args[0])
        _note_write(args[1])
    elif event in _PATH_EVENTS:
        _note_write(args[0])


sys.addaudithook(_audit)


# --- malformed files ----------------------------------------------------------------------------


def _jpeg(rng: np.random.Generator, size: tuple[int, int] = (24, 18), fmt: str = "JPEG") -> bytes:
    w, h = size
    im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def _png_header(w: int, h: int, data: bytes = b"\0" * 64) -> bytes:
    """A PNG that declares w x h pixels but holds almost nothing (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(data))
        + chunk(b"IEND", b"")
    )


def _gif_header(w: int, h: int) -> bytes:
    return (
        b"GIF89a"
        + struct.pack("<HHBBB", w, h, 0, 0, 0)
        + b",\0\0\0\0"
        + b"\x01\0\x01\0\0\x02\x02D\x01\0;"
    )


def _corrupt(rng: np.random.Generator, data: bytes) -> bytes:
    b = bytearray(data)
    for i in rng.integers(2, len(b), size=max(1, len(b) // 20)):
        b[int(i)] = int(rng.integers(0, 256))
    return bytes(b)


ODD_NAMES = [
    "with space.jpg",
    "new\nline.jpg",
    "tab\tname.jpg",
    "-starts-with-dash.jpg",
    "question?mark.jpg",
    "hash#k [1,2,3,4].jpg",
    "percent%25.jpg",
    "quote'\"s.jpg",
    "\u732b\u306e\u5199\u771f.jpg",
    "e\u0301combining.jpg",
    "\U0001f600.jpg",
    "x" * 240 + ".jpg",
    os.fsdecode(b"latin1_\xe9\xff.jpg"),
    "trailing.dot.",
    "UPPER.JPG",
    "double.jpg.png",
    "no_extension",
    ".hidden.jpg",
]
IMAGE_MALFORMATIONS: dict[str, Callable[[np.random.Generator], tuple[str, bytes]]] = {
    "truncated jpeg": lambda r: (
        "cut.jpg",
        (d := _jpeg(r, (64, 48)))[: int(r.integers(1, len(d)))],
    ),
    "truncated png": lambda r: (
        "cut.png",
        (d := _jpeg(r, (64, 48), "PNG"))[: int(r.integers(1, len(d)))],
    ),
    "corrupt jpeg": lambda r: ("flipped.jpg", _corrupt(r, _jpeg(r, (64, 48)))),
    "corrupt png": lambda r: ("flipped.png", _corrupt(r, _jpeg(r, (32, 32), "PNG"))),
    "zero bytes": lambda r: ("empty" + str(r.choice([".jpg", ".png", ".gif", ".webp"])), b""),
    "garbage": lambda r: (
        "noise.jpg",
        r.integers(0, 256, int(r.integers(1, 2000))).astype(np.uint8).tobytes(),
    ),
    "png bomb": lambda r: ("bomb.png", _png_header(100_000, 100_000)),
    "png over the limit": lambda r: ("big.png", _png_header(10_000, 10_000)),
    "png of 0 px": lambda r: ("zero.png", _png_header(0, 0)),
    "png truncated pixels": lambda r: ("thin.png", _png_header(2_000, 1_500)),
    "gif bomb": lambda r: ("bomb.gif", _gif_header(65_535, 65_535)),
    "png as jpg": lambda r: ("really_png.jpg", _jpeg(r, fmt="PNG")),
    "jpeg as txt": lambda r: ("photo.txt", _jpeg(r)),
    "text as png": lambda r: ("readme.png", b"just some text\n" * int(r.integers(1, 50))),
    "bmp header only": lambda r: (
        "head.bmp",
        b"BM" + struct.pack("<IHHI", 70, 0, 0, 54) + b"\0" * 8,
    ),
    "odd name": lambda r: (str(r.choice(ODD_NAMES)), _jpeg(r)),
}

VOC_OK = (
    "<annotation><filename>{stem}.jpg</filename><object><name>{cls}</name><bndbox>"
    "<xmin>5</xmin><ymin>5</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>"
)
LAUGHS = (
    '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY l "lol">'
    '<!ENTITY l2 "&l;&l;&l;&l;&l;&l;&l;&l;">]><annotation>&l2;</annotation>'
)
XML_MALFORMATIONS: dict[str, Callable[[np.random.Generator, str, str], bytes]] = {
    "truncated": lambda r, s, c: (d := VOC_OK.format(stem=s, cls=c).encode())[
        : int(r.integers(0, len(d)))
    ],
    "utf-16 laughs": lambda r, s, c: LAUGHS.encode("utf-16"),
    "utf-32": lambda r, s, c: VOC_OK.format(stem=s, cls=c).encode("utf-32"),
    "utf-16 ok": lambda r, s, c: VOC_OK.format(stem=s, cls=c).encode("utf-16"),
    "external entity": lambda r, s, c: (
        b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>'
    ),
    "garbage": lambda r, s, c: r.integers(0, 256, 300).astype(np.uint8).tobytes(),
    "nan box": lambda r, s, c: (
        VOC_OK.format(stem=s, cls=c).replace("<xmin>5", "<xmin>nan").encode()
    ),
    "inf box": lambda r, s, c: (
        VOC_OK.format(stem=s, cls=c).replace("<xmax>20", "<xmax>1e999").encode()
    ),
    "huge box": lambda r, s, c: (
        VOC_OK.format(stem=s, cls=c).replace("<xmax>20", "<xmax>1e300").encode()
    ),
    "negative box": lambda r, s, c: (
        VOC_OK.format(stem=s, cls=c).replace("<xmin>5", "<xmin>-99").encode()
    ),
    "no bndbox": lambda r, s, c: (
        f"<annotation><object><name>{c}</name></object></annotation>".encode()
    ),
    "no name": lambda r, s, c: VOC_OK.format(stem=s, cls="").encode(),
    "unknown class": lambda r, s, c: VOC_OK.format(stem=s, cls="scratch").encode(),
    "wrong image": lambda r, s, c: VOC_OK.format(stem="../../etc/passwd", cls=c).encode(),
    "deep nesting": lambda r, s, c: b"<a>" * 5000 + b"</a>" * 5000,
    "no root": lambda r, s, c: b'<?xml version="1.0"?>',
    "undefined entity": lambda r, s, c: b"<annotation>&nope;</annotation>",
    "too large": lambda r, s, c: b"<annotation>" + b" " * (1 << 20) + b"</annotation>",
    "not xml name": lambda r, s, c: b"",
}


# --- datasets -----------------------------------------------------------------------------------


def _folder_case(root: Path, rng: np.random.Generator) -> str:
    classes = (
        ["a", "b"]
        if rng.random() < 0.8
        else ["a", str(rng.choice(["-x", "c d", os.fsdecode(b"\xe9")]))]
    )
    for cls in classes:
        for i in range(int(rng.integers(2, 5))):
            (root / cls).mkdir(parents=True, exist_ok=True)
            (root / cls / f"ok_{i}.jpg").write_bytes(_jpeg(rng))
    names = list(IMAGE_MALFORMATIONS)
    for k in rng.choice(len(names), size=int(rng.integers(1, 4)), replace=False):
        name, data = IMAGE_MALFORMATIONS[names[int(k)]](rng)
        where = root / str(rng.choice(classes))
        if rng.random() < 0.1:
            where = root  # a loose file next to the class folders
        try:
            (where / name).write_bytes(data)
        except OSError:  # a name this file system refuses (too long, ...): another name
            (where / f"fallback_{k}.jpg").write_bytes(data)
    kind = "caltech101" if rng.random() < 0.3 else "folder"
    return f"{kind}:{root}"


def _pku_case(root: Path, rng: np.random.Generator) -> str:
    boards = []
    for cls in ("Short", "Spur"):
        for tpl in ("01", "02", "03"):
            stem = f"{tpl}_{cls.lower()}"
            (root / "images" / cls).mkdir(parents=True, exist_ok=True)
            (root / "Annotations" / cls).mkdir(parents=True, exist_ok=True)
            (root / "images" / cls / f"{stem}.jpg").write_bytes(_jpeg(rng, (48, 40)))
            xml = VOC_OK.format(stem=stem, cls=cls.lower()).encode()
            (root / "Annotations" / cls / f"{stem}.xml").write_bytes(xml)
            boards.append((cls, stem))
    names = list(XML_MALFORMATIONS)
    for k in rng.choice(len(names), size=int(rng.integers(1, 4)), replace=False):
        cls, stem = boards[int(rng.integers(len(boards)))]
        data = XML_MALFORMATIONS[names[int(k)]](rng, stem, cls.lower())
        target = root / "Annotations" / cls / f"{stem}.xml"
        if names[int(k)] == "not xml name":
            target = target.with_suffix(".txt")
            data = b"notes"
        target.write_bytes(data)
    if rng.random() < 0.3:  # and a bad board image
        cls, stem = boards[int(rng.integers(len(boards)))]
        _, data = IMAGE_MALFORMATIONS[
            str(rng.choice(["truncated jpeg", "zero bytes", "png bomb"]))
        ](rng)
        (root / "images" / cls / f"{stem}.jpg").write_bytes(data)
    return f"pku-pcb:{root}"


def _run_case(ref: str, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        splits = resolve(ref)
    except EdgeTrainError:
        splits = None
    if splits is not None:
        for s in SPLIT_NAMES:
            with contextlib.suppress(EdgeTrainError):  # e.g. no image of the split decodes
                load_split(splits, s, resolution=8, cache_dir=cache)
    rc = main(
        [
            "data",
            "inspect",
            ref,
            "--json",
            "--decode",
            "--resolution",
            "8",
            "--cache-dir",
            str(cache),
        ]
    )
    err = capsys.readouterr().err
    assert rc in (0, 2), (ref, rc, err)
    assert "Traceback" not in err, err


def test_malformed_inputs_never_crash_or_write_outside_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var, sub in (("EDGETRAIN_CACHE", "cache"), ("XDG_CACHE_HOME", "xdg"), ("HOME", "home")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(SEED)
    _WATCH.update(root=str(tmp_path), bad=[])
    try:
        for i in range(N_CASES):
            root = tmp_path / f"case{i:03d}"
            root.mkdir()
            ref = _pku_case(root, rng) if rng.random() < 0.35 else _folder_case(root, rng)
            _run_case(ref, tmp_path / "cache", capsys)
    finally:
        bad = list(_WATCH["bad"])  # type: ignore[call-overload]
        _WATCH.update(root=None, bad=[])
    assert not bad, f"written outside {tmp_path}: {bad[:5]}"
