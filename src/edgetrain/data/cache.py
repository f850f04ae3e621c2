"""Decode once: `load_split` turns a split's records into uint8 tensors and caches them on disk.

The cache file of a split holds its images at one resolution, uint8 (N, 3, R, R), its labels and
the files that failed to decode. Its key hashes the settings (resolution, resampling, Pillow
version, cache format, class names) and the content: every record's path, crop and label, and
every file's size and mtime. Any change to a file, the split or the settings gives another key,
so a stale cache is never read. Files are written atomically (temporary file + rename) and read
back with `torch.load(weights_only=True)`, which cannot run code from a tampered file.

Cache location: `cache_dir` argument, else `$EDGETRAIN_CACHE`, else `$XDG_CACHE_HOME/edgetrain`,
else `~/.cache/edgetrain`; data caches live in its `data/` folder and can be deleted at any time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import PIL
import torch

# decode_records and decode_workers lived here; benchmarks/data_pipeline.py imports them from here.
from edgetrain.data.decode import decode_records as decode_records
from edgetrain.data.decode import decode_workers as decode_workers
from edgetrain.data.registry import Pixels, kind_of
from edgetrain.data.splits import Record, Splits, name_bytes
from edgetrain.errors import EdgeTrainError

log = logging.getLogger(__name__)
CACHE_FORMAT = 1  # bump when decoding changes what pixels a file gives


def default_cache_dir() -> Path:
    """$EDGETRAIN_CACHE, else $XDG_CACHE_HOME/edgetrain, else ~/.cache/edgetrain."""
    if os.environ.get("EDGETRAIN_CACHE"):
        return Path(os.environ["EDGETRAIN_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "edgetrain"


def cache_key(splits: Splits, split: str, records: Sequence[Record], resolution: int) -> str:
    """Hex digest over the settings, the records and each file's size and mtime."""
    h = hashlib.sha256()
    settings = {
        "format": CACHE_FORMAT,
        "resolution": resolution,
        "resample": "bilinear",
        "pillow": PIL.__version__,
        "classes": splits.classes,
    }
    h.update(json.dumps(settings, sort_keys=True).encode())
    stats: dict[str, str] = {}
    for r in records:
        if r.path is not None and r.path not in stats:
            try:
                st = os.stat(r.path)
                stats[r.path] = f"{st.st_size}:{st.st_mtime_ns}"
            except OSError:
                stats[r.path] = "missing"
        line = f"{r.path}\0{stats.get(r.path or '', '')}\0{r.crop}\0{r.label}\n"
        h.update(name_bytes(line))  # a non-UTF-8 file name hashes as its bytes
    return h.hexdigest()


def _cache_path(cache_dir: Path, splits: Splits, split: str, resolution: int, key: str) -> Path:
    ref = splits.ref
    tail = Path(str(getattr(ref, "path", ""))).name if ref.has_path else ""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{ref.kind}-{tail}".strip("-"))[:60]
    return cache_dir / "data" / f"{slug}-{split}-{resolution}px-{key[:20]}.pt"


def _read_cache(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        images, labels = blob["images"], blob["labels"]
        ok = (
            blob.get("format") == CACHE_FORMAT
            and blob.get("key") == key
            and images.dtype == torch.uint8
            and labels.dtype == torch.int64
            and images.shape[0] == labels.shape[0]
        )
        if ok:
            return blob
        log.warning("ignoring cache %s: it does not match its key", path)
    except Exception as exc:  # truncated or foreign file: decode again and overwrite it
        log.warning("ignoring unreadable cache %s (%s)", path, exc)
    return None


def _write_cache(path: Path, blob: dict) -> None:
    """Atomic write: a temporary file in the same folder, fsync, then rename over `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
    except OSError as exc:
        log.warning("not caching decoded images: cannot write to %s (%s)", path.parent, exc)
        return
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a cache may be shared between users
        with os.fdopen(fd, "wb") as f:
            torch.save(blob, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if not isinstance(exc, OSError):
            raise
        log.warning("not caching decoded images: writing %s failed (%s)", path, exc)


def load_split(
    splits: Splits,
    split: str,
    *,
    resolution: int,
    cache_dir: Path | str | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 (N, 3, R, R) and labels int64 (N,) of one split at `resolution` R.

    The pixels come from the kind's pixel source (`edgetrain.data.registry`). Files are decoded
    on the first call (Pillow, in threads, with a rich progress bar if `progress`) and the result
    is cached; later calls with the same files and settings read the cache. Files that fail to
    decode are left out, noted with the reason by `splits.drop` (so they are in `splits.skipped`
    and `splits.dropped[split]`, and `splits.counts()` no longer counts them) and logged; if none
    decodes, `EdgeTrainError`. An empty split (val may be) gives (0, 3, R, R) and (0,). Generated data
    (`synthetic-pcb`) is rendered anew on each call and not cached. The progress bar is a rich
    live display: start it before any other live display (rich allows one at a time).
    """
    if not isinstance(resolution, int) or not 8 <= resolution <= 4096:
        raise EdgeTrainError(f"resolution must be an integer from 8 to 4096 px, got {resolution!r}")
    records = splits.split(split)
    if not records:
        # An empty val split is legal; callers decide whether to evaluate on it.
        return torch.zeros(0, 3, resolution, resolution, dtype=torch.uint8), torch.zeros(
            0, dtype=torch.int64
        )
    kind = kind_of(splits.ref)

    def make() -> Pixels:
        label = f"decoding {split} ({resolution} px)"
        return kind.pixels(splits.ref, records, resolution, progress=progress, label=label)

    if kind.cached:
        images, labels, skipped = _cached(splits, split, records, resolution, cache_dir, make)
    else:
        images, labels, skipped = make()
    _report_skipped(splits, split, records, skipped)
    if images.shape[0] == 0:
        raise EdgeTrainError(
            f"{splits.name}: none of the {len(records)} {split} images could be decoded "
            f"(first: {skipped[0][0]}: {skipped[0][1]})"
        )
    return images, labels


def _cached(
    splits: Splits,
    split: str,
    records: Sequence[Record],
    resolution: int,
    cache_dir: Path | str | None,
    make: Callable[[], Pixels],
) -> Pixels:
    """`make()`'s pixels, read from the cache file of this key if there is one, else made and
    written there."""
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    key = cache_key(splits, split, records, resolution)
    path = _cache_path(cache_root, splits, split, resolution, key)
    blob = _read_cache(path, key)
    if blob is None:
        t0 = time.perf_counter()
        images, labels, skipped = make()
        log.info("decoded %d images in %.1f s", len(records), time.perf_counter() - t0)
        blob = {
            "format": CACHE_FORMAT,
            "key": key,
            "images": images,
            "labels": labels,
            "skipped": [list(s) for s in skipped],
        }
        _write_cache(path, blob)
    return blob["images"], blob["labels"], [(str(a), str(b)) for a, b in blob["skipped"]]


def _report_skipped(
    splits: Splits, split: str, records: Sequence[Record], skipped: list[tuple[str, str]]
) -> None:
    """Note the records that failed to decode in `splits` (`Splits.drop`) and log them."""
    splits.drop(split, skipped)
    if skipped:
        log.warning(
            "%s: %d of %d %s images could not be decoded and are left out: %s",
            splits.name,
            len(skipped),
            len(records),
            split,
            "; ".join(f"{f} ({why})" for f, why in skipped[:5])
            + (" ..." if len(skipped) > 5 else ""),
        )
