"""Reading image files with Pillow: probe the header, decode to RGB, crop, resize.

Every mode a user's files may have ends up as 8-bit RGB: grayscale and 1-bit are replicated,
palette and CMYK converted, alpha composited over white, 16-bit scaled down (not clipped).
EXIF orientation is applied before any crop, so crop boxes are in the image as it is viewed.
Anything Pillow cannot read becomes `BadImage(reason)`, which callers turn into a reported skip.
Pillow's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`) is kept and enforced as a skip.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees
_RESAMPLE = Image.Resampling.BILINEAR  # antialiased when shrinking (Pillow scales the support)

Box = tuple[int, int, int, int]  # (left, top, right, bottom) in pixels, right/bottom exclusive


class BadImage(Exception):
    """A file that cannot be used; `str(exc)` is the reason shown to the user."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    width: int  # as viewed, i.e. after EXIF orientation
    height: int
    mode: str


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, UnidentifiedImageError):
        return "not an image Pillow can read (corrupt, or another kind of file)"
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return f"too many pixels, refused as a possible decompression bomb ({text})"
    if "truncated" in text.lower():
        return f"corrupt or truncated image file ({text})"
    return f"cannot decode: {type(exc).__name__}: {text}"


@contextmanager
def bomb_guard() -> Iterator[None]:
    """Turn Pillow's DecompressionBombWarning into an exception for the duration.

    Warning filters are process-wide: enter this in the main thread around a pool of decoding
    threads, not inside the workers.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _check_pixels(im: Image.Image) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and im.width * im.height > limit:
        raise BadImage(
            f"too many pixels ({im.width} x {im.height}), refused as a possible decompression "
            f"bomb (Pillow's limit is {limit:,})"
        )


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # a malformed EXIF block must not lose the image
        return 1


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


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (alpha over white, 16-bit scaled, not clipped)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I") or mode == "F":
        a = np.asarray(im).astype(np.float32)
        if mode.startswith("I;16") or (mode == "I" and a.max(initial=0) > 255):
            a = a / 257.0  # 0..65535 -> 0..255
        elif mode == "F" and a.max(initial=0) <= 1.0:
            a = a * 255.0  # float images in [0, 1]
        gray = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
        return gray.convert("RGB")
    if "A" in mode or "a" in mode or (mode in ("P", "L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    return im.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def decode(
    path: str | os.PathLike, *, resolution: int, crops: Sequence[Box | None] = (None,)
) -> list[np.ndarray]:
    """Decode one file once and return one (R, R, 3) uint8 array per entry of `crops`.

    A crop is a box in the EXIF-oriented image, `None` for the whole image; each is stretched to
    R x R (as the paper's Keras loader does). JPEGs are decoded at a reduced DCT scale when the
    largest output still keeps at least R pixels per crop side, which is most of the speed-up on
    large photos. Raises `BadImage` with a reason on any failure.
    """
    r = int(resolution)
    try:
        with Image.open(path) as im:
            _check_pixels(im)
            swapped = _orientation(im) in _SWAPS_AXES
            w0, h0 = im.size  # as stored
            vw, vh = (h0, w0) if swapped else (w0, h0)  # as viewed
            # Smallest window side decides how far the JPEG may be scaled down at decode time.
            sides = [min(vw, vh) if c is None else min(c[2] - c[0], c[3] - c[1]) for c in crops]
            scale = max(min(sides) / r, 1.0)  # >1: the decoder may shrink by up to this factor
            if scale > 1.0:
                im.draft(im.mode, (math.ceil(w0 / scale), math.ceil(h0 / scale)))
            im = ImageOps.exif_transpose(im)  # loads the pixels; raises on truncated data
            im = to_rgb(im)
            sx, sy = im.width / vw, im.height / vh  # < 1 when the draft shrank the image
            out = []
            for c in crops:
                region = im
                if c is not None:
                    box = (
                        round(c[0] * sx),
                        round(c[1] * sy),
                        max(round(c[2] * sx), round(c[0] * sx) + 1),
                        max(round(c[3] * sy), round(c[1] * sy) + 1),
                    )
                    region = im.crop(box)
                if region.size != (r, r):
                    region = region.resize((r, r), _RESAMPLE)
                out.append(np.array(region, dtype=np.uint8))  # writable, owns its memory
            return out
    except BadImage:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError, struct.error, ...
        raise BadImage(_describe(exc)) from exc


def scan_folder(folder: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files under `folder` (recursive, sorted) and (file, reason) for everything else.

    Files are recognised by extension; hidden files and other extensions are reported, not
    silently dropped.
    """
    images: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        for d in [d for d in dirnames if d.startswith(".")]:
            skipped.append((str(Path(dirpath) / d), "hidden folder"))
            dirnames.remove(d)
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name.startswith("."):
                skipped.append((str(p), "hidden file"))
            elif is_image_name(p):
                images.append(p)
            else:
                suffix = p.suffix or "no extension"
                skipped.append((str(p), f"not an image file ({suffix})"))
    return images, skipped


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
