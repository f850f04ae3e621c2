"""What a dataset reference resolves to: a JSON-able summary and a contact sheet of samples."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from edgetrain.data.registry import kind_of
from edgetrain.data.splits import SPLIT_NAMES, Record, Splits, printable


def _stats(values: list[int]) -> dict[str, float]:
    a = np.asarray(values)
    return {"min": int(a.min()), "median": float(np.median(a)), "max": int(a.max())}


def summarize(splits: Splits) -> dict[str, Any]:
    """A JSON-able description: classes, counts per split and class, groups, skipped files with
    reasons, warnings, and image size statistics (of the files, or of the crop windows)."""
    records = [r for s in SPLIT_NAMES for r in splits.split(s)]
    sized = [r.size for r in records if r.size is not None]
    sizes: dict[str, Any] | None = None
    if sized:
        sizes = {
            "width": _stats([w for w, _ in sized]),
            "height": _stats([h for _, h in sized]),
            "modes": dict(Counter(r.mode for r in records if r.mode).most_common()),
            "of": "crop windows" if any(r.crop for r in records) else "files",
        }
    return {
        "ref": splits.name,
        "kind": splits.ref.kind,
        "seed": splits.seed,
        "augment_default": splits.ref.augment_default,
        "classes": list(splits.classes),
        "num_classes": len(splits.classes),
        "splits": splits.counts(),
        "class_counts": splits.class_counts(),
        "groups": splits.groups,
        "image_size": sizes,
        "skipped": splits.skipped_report(),
        "warnings": list(splits.warnings),
    }


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def sample_records(
    splits: Splits, *, split: str = "train", per_class: int = 8, seed: int = 0
) -> list[list[Record]]:
    """Up to `per_class` records of each class from `split`, picked at random by `seed`."""
    by_class: list[list[Record]] = [[] for _ in splits.classes]
    for r in splits.split(split):
        by_class[r.label].append(r)
    rng = np.random.default_rng(seed)
    out = []
    for recs in by_class:
        pick = rng.choice(len(recs), size=min(per_class, len(recs)), replace=False) if recs else []
        out.append([recs[i] for i in sorted(pick)])
    return out


def _tiles(
    splits: Splits, split: str, records: list[Record], resolution: int
) -> dict[int, torch.Tensor]:
    """id(record) -> its (3, R, R) uint8 tile, made by the kind's pixel source (uncached).

    Records that fail to decode get no tile and are noted in `splits` (`Splits.drop`).
    """
    if not records:
        return {}
    pixels = kind_of(splits.ref).pixels
    images, _, skipped = pixels(splits.ref, records, resolution, progress=False, label="")
    bad = {src for src, _ in skipped}
    good = [r for r in records if r.source not in bad]  # pixel sources keep the records' order
    splits.drop(split, skipped)
    return {id(r): images[i] for i, r in enumerate(good)}


def contact_sheet(
    splits: Splits,
    out: Path | str,
    *,
    split: str = "train",
    per_class: int = 8,
    resolution: int = 96,
    seed: int = 0,
) -> Path:
    """Write a PNG with one row per class: its name and `per_class` samples at `resolution` px.

    Samples are decoded exactly as training sees them (crops, EXIF orientation, resize) but not
    cached; files that fail to decode show as grey tiles and are noted in `splits`
    (`Splits.drop`).
    """
    rows = sample_records(splits, split=split, per_class=per_class, seed=seed)
    tiles = _tiles(splits, split, [r for row in rows for r in row], resolution)
    counts = splits.class_counts()
    font = _font(max(11, min(16, resolution // 6)))
    label_w, gap, pad = 210, 2, 4
    width = label_w + per_class * (resolution + gap)
    height = max(1, len(rows)) * (resolution + gap) + 28
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text(
        (pad, 6), f"{printable(splits.name)}  ({split}, {resolution} px)", fill=(0, 0, 0), font=font
    )
    for k, row in enumerate(rows):
        y = 28 + k * (resolution + gap)
        c = splits.classes[k]
        draw.text((pad, y + pad), printable(c)[:28], fill=(0, 0, 0), font=font)
        n = counts[c]
        draw.text(
            (pad, y + pad + 18),
            f"{n['train']}/{n['val']}/{n['test']}",
            fill=(90, 90, 90),
            font=font,
        )
        for j, r in enumerate(row):
            x = label_w + j * (resolution + gap)
            t = tiles.get(id(r))
            tile = (
                Image.fromarray(t.permute(1, 2, 0).numpy())
                if t is not None
                else Image.new("RGB", (resolution, resolution), (160, 160, 160))
            )
            sheet.paste(tile, (x, y))
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
