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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import PIL
import torch

from edgetrain.data.decode import BadImage, bomb_guard, decode
from edgetrain.data.splits import Record, Splits
from edgetrain.errors import EdgeTrainError

if TYPE_CHECKING:
    from rich.progress import Progress

log = logging.getLogger(__name__)
CACHE_FORMAT = 1  # bump when decoding changes what pixels a file gives
_MAX_WORKERS = 8


def default_cache_dir() -> Path:
    """$EDGETRAIN_CACHE, else $XDG_CACHE_HOME/edgetrain, else ~/.cache/edgetrain."""
    if os.environ.get("EDGETRAIN_CACHE"):
        return Path(os.environ["EDGETRAIN_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "edgetrain"


def decode_workers() -> int:
    """Threads for decoding: the CPUs this process may use (Pillow releases the GIL)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, _MAX_WORKERS))


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
        h.update(f"{r.path}\0{stats.get(r.path or '', '')}\0{r.crop}\0{r.label}\n".encode())
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


def load_split(
    splits: Splits,
    split: str,
    *,
    resolution: int,
    cache_dir: Path | str | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 (N, 3, R, R) and labels int64 (N,) of one split at `resolution` R.

    The first call decodes the files (Pillow, in threads, with a rich progress bar if
    `progress`) and caches the result; later calls with the same files and settings read the
    cache. Files that fail to decode are left out, added to `splits.skipped` with the reason and
    logged; if none decodes, `EdgeTrainError`. An empty split (val may be) gives (0, 3, R, R) and
    (0,). Generated data (`synthetic-pcb`) is rendered instead and not cached. The progress bar
    is a rich live display: start it before any other live display (rich allows one at a time).
    """
    if not isinstance(resolution, int) or not 8 <= resolution <= 4096:
        raise EdgeTrainError(f"resolution must be an integer from 8 to 4096 px, got {resolution!r}")
    records = splits.split(split)
    if not records:
        # An empty val split is legal; callers decide whether to evaluate on it.
        return torch.zeros(0, 3, resolution, resolution, dtype=torch.uint8), torch.zeros(
            0, dtype=torch.int64
        )
    if records[0].path is None:
        return render_generated(splits, records, resolution)
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    key = cache_key(splits, split, records, resolution)
    path = _cache_path(cache_root, splits, split, resolution, key)
    blob = _read_cache(path, key)
    if blob is None:
        t0 = time.perf_counter()
        images, labels, skipped = decode_records(
            records, resolution, progress=progress, label=f"decoding {split} ({resolution} px)"
        )
        log.info("decoded %d images in %.1f s", len(records), time.perf_counter() - t0)
        blob = {
            "format": CACHE_FORMAT,
            "key": key,
            "images": images,
            "labels": labels,
            "skipped": [list(s) for s in skipped],
        }
        _write_cache(path, blob)
    skipped = [(str(a), str(b)) for a, b in blob["skipped"]]
    known = set(splits.skipped)
    splits.skipped += [s for s in skipped if s not in known]
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
    if blob["images"].shape[0] == 0:
        raise EdgeTrainError(
            f"{splits.name}: none of the {len(records)} {split} images could be decoded "
            f"(first: {skipped[0][0]}: {skipped[0][1]})"
        )
    return blob["images"], blob["labels"]


def render_generated(
    splits: Splits, records: Sequence[Record], resolution: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render generated records (synthetic-pcb): uint8 (N, 3, R, R) and int64 labels (N,).

    Renders at the ref's `size` (or at R when it has none) and resizes to R (bilinear, with
    antialiasing) when they differ.
    """
    from edgetrain.data.synthetic import render

    ref = splits.ref
    size = getattr(ref, "size", None) or resolution
    images = render(
        [r.index for r in records],  # type: ignore[misc]
        [r.label for r in records],
        size=size,
        seed=getattr(ref, "seed", 0),
    )
    if size != resolution:
        x = torch.nn.functional.interpolate(
            images.float(), size=(resolution, resolution), mode="bilinear", antialias=True
        )
        images = x.round_().clamp_(0, 255).to(torch.uint8)
    return images, torch.tensor([r.label for r in records], dtype=torch.int64)
