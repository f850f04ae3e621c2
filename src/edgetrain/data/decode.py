"""Reading image files with Pillow: probe the header, decode to RGB, crop, resize; a split's files
in parallel threads (`decode_records`, the pixel source of every file-backed dataset kind).

Every mode a user's files may have ends up as 8-bit RGB: grayscale and 1-bit are replicated,
palette and CMYK converted, alpha composited over white, 16-bit scaled down (not clipped).
EXIF orientation is applied before any crop, so crop boxes are in the image as it is viewed.
Anything Pillow cannot read becomes `BadImage(reason)`, which callers turn into a reported skip.
Pillow's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`) is kept and enforced as a skip.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from edgetrain.data.refbase import DatasetRef
from edgetrain.data.splits import Record

# Decoding itself lives in edgetrain.preprocess (numpy + Pillow only), shared with inference;
# its names stay importable from here. decode_records looks `decode` up in this module.
from edgetrain.preprocess import (  # re-exported: IMAGE_EXTENSIONS, Box, is_image_name, to_rgb
    _SWAPS_AXES,
    IMAGE_EXTENSIONS,  # noqa: F401
    BadImage,
    Box,  # noqa: F401
    _check_pixels,
    _describe,
    _orientation,
    bomb_guard,
    decode,
    is_image_name,  # noqa: F401
    to_rgb,  # noqa: F401
)

if TYPE_CHECKING:
    from rich.progress import Progress

_MAX_WORKERS = 8


@dataclass(frozen=True, slots=True)
class ImageInfo:
    width: int  # as viewed, i.e. after EXIF orientation
    height: int
    mode: str


def probe(path: str | os.PathLike) -> ImageInfo:
    """Read the header of one image file (no pixel decoding) or raise `BadImage` with a reason.

    Catches zero-byte files, other kinds of files with an image extension, unsupported formats
    and over-large images; truncated pixel data only shows when decoding.
    """
    try:
        if os.path.getsize(path) == 0:
            raise BadImage("empty file (0 bytes)")
        with bomb_guard(), Image.open(path) as im:
            _check_pixels(im)
            w, h = im.size
            if w < 1 or h < 1:
                raise BadImage(f"image has no pixels ({w} x {h})")
            if _orientation(im) in _SWAPS_AXES:
                w, h = h, w
            return ImageInfo(w, h, im.mode)
    except BadImage:
        raise
    except Exception as exc:
        raise BadImage(_describe(exc)) from exc


def probe_files(paths: Sequence[Path]) -> tuple[dict[Path, ImageInfo], list[tuple[str, str]]]:
    """Probe every path; returns the readable ones' info and (file, reason) for the rest."""
    infos: dict[Path, ImageInfo] = {}
    skipped: list[tuple[str, str]] = []
    for p in paths:
        try:
            infos[p] = probe(p)
        except BadImage as exc:
            skipped.append((str(p), str(exc)))
    return infos, skipped


def decode_workers() -> int:
    """Threads for decoding: the CPUs this process may use (Pillow releases the GIL)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, _MAX_WORKERS))


def decode_records(
    records: Sequence[Record], resolution: int, *, progress: bool = False, label: str = "decoding"
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """Decode and resize `records` in parallel threads, each file once (several crops per board).

    Returns images uint8 (M, 3, R, R), labels int64 (M,) and (source, reason) for the M <= N
    records whose file failed to decode; the rest keep their order.
    """
    r = resolution
    n = len(records)
    out = np.empty((n, 3, r, r), dtype=np.uint8)
    units: dict[str, list[int]] = {}  # file -> indices of its records (crops of one board)
    for i, rec in enumerate(records):
        if rec.path is None:
            raise ValueError(f"record {rec.source} has no file to decode")
        units.setdefault(rec.path, []).append(i)
    failed: dict[int, str] = {}

    def work(path: str, idx: list[int]) -> tuple[list[int], str | None]:
        try:
            arrays = decode(path, resolution=r, crops=[records[i].crop for i in idx])
        except BadImage as exc:
            return idx, str(exc)
        for i, a in zip(idx, arrays, strict=True):
            out[i] = a.transpose(2, 0, 1)  # (R, R, 3) -> (3, R, R); distinct rows per thread
        return idx, None

    bar = _progress(progress)
    task = bar.add_task(label, total=n) if bar else None
    with bomb_guard(), ThreadPoolExecutor(decode_workers()) as pool:
        if bar:
            bar.start()
        try:
            futures = [pool.submit(work, p, idx) for p, idx in units.items()]
            for fut in as_completed(futures):
                idx, reason = fut.result()
                if reason is not None:
                    failed.update(dict.fromkeys(idx, reason))
                if bar:
                    bar.advance(task, len(idx))  # type: ignore[arg-type]
        finally:
            if bar:
                bar.stop()
    keep = np.array([i not in failed for i in range(n)], dtype=bool)
    images = torch.from_numpy(out if keep.all() else out[keep])
    labels = torch.tensor(
        [rec.label for i, rec in enumerate(records) if keep[i]], dtype=torch.int64
    )
    skipped = [(records[i].source, reason) for i, reason in sorted(failed.items())]
    return images, labels, skipped


def _progress(enabled: bool) -> Progress | None:
    """A rich progress bar on stderr (images done / total, images/s, time left), or None."""
    if not enabled:
        return None
    # Imported here: rich.progress costs ~0.1 s to import and only progress bars need it.
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:  # type: ignore[no-untyped-def]
            return Text(f"{task.speed:6.0f} img/s" if task.speed else "     ? img/s")

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


def load_files(
    ref: DatasetRef,
    records: Sequence[Record],
    resolution: int,
    *,
    progress: bool = False,
    label: str = "decoding",
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """The pixel source of file-backed kinds: `decode_records` (records hold absolute paths and
    crop boxes, so the ref adds nothing)."""
    return decode_records(records, resolution, progress=progress, label=label)
