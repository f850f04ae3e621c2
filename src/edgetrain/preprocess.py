"""The one image preprocessing of edgetrain, shared by training and inference: decode with EXIF
orientation, convert to 8-bit RGB, crop, resize to the model's resolution, normalise to [-1, 1].

numpy and Pillow only (no torch), so the ONNX prediction path can use it. The data package's
decode-once cache (`edgetrain.data.decode.decode_records`) calls `decode` from here, and
`edgetrain predict` / `edgetrain evaluate` call `load_image` and `normalize`, so a file gives the
same pixels, bit for bit, in training, evaluation and prediction.

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


def load_image(path: str | os.PathLike, *, resolution: int) -> np.ndarray:
    """One whole image file as training decodes it: (R, R, 3) uint8 RGB, EXIF-oriented, resized.

    Raises `BadImage` with a reason for anything that cannot be used (missing, empty, corrupt,
    not an image, too many pixels).
    """
    try:
        if os.path.getsize(path) == 0:
            raise BadImage("empty file (0 bytes)")
    except OSError as exc:
        raise BadImage(f"cannot read: {exc.strerror or exc}") from None
    return decode(path, resolution=resolution)[0]


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, 3, H, W) -> float32 in [-1, 1] (x / 127.5 - 1), bit-identical to
    `edgetrain.data.loader.normalize`, which training and evaluation use."""
    return images.astype(np.float32) * np.float32(1 / 127.5) - np.float32(1.0)


def to_batch(images: Sequence[np.ndarray]) -> np.ndarray:
    """(R, R, 3) uint8 images -> one float32 batch (N, 3, R, R) in [-1, 1], C-contiguous."""
    nchw = np.stack([np.asarray(a, dtype=np.uint8).transpose(2, 0, 1) for a in images])
    return np.ascontiguousarray(normalize(nchw))
