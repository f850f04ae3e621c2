"""Pictures of an evaluation: the confusion matrix and a contact sheet of misclassified images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TILE_PX = 96
COLUMNS = 8
LABEL_PX = 30  # two lines of text under each tile


def confusion_png(confusion: list[list[int]], classes: list[str], out_dir: Path) -> Path:
    """confusion.png: counts, rows = true class, columns = predicted, diagonal = correct."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion)
    n = len(classes)
    side = min(2.0 + 0.5 * n, 30.0)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    if n <= 40:
        ax.set_xticks(range(n), [c[:20] for c in classes], rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), [c[:20] for c in classes], fontsize=8)
    if n <= 20:
        hi = cm.max() if cm.size else 0
        for i in range(n):
            for j in range(n):
                color = "white" if cm[i, j] > hi / 2 else "black"
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8, color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    path = out_dir / "confusion.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def misclassified_sheet(items: Sequence[tuple[np.ndarray, str, str]], out_dir: Path) -> Path:
    """misclassified.png: each image (uint8 (3, R, R), as the model saw it) with 'true' and
    'predicted as' under it, `COLUMNS` per row."""
    rows = (len(items) + COLUMNS - 1) // COLUMNS
    cell_h = TILE_PX + LABEL_PX
    sheet = Image.new("RGB", (COLUMNS * (TILE_PX + 2), rows * (cell_h + 2)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(10)
    for k, (image, true, pred) in enumerate(items):
        x, y = (k % COLUMNS) * (TILE_PX + 2), (k // COLUMNS) * (cell_h + 2)
        tile = Image.fromarray(np.asarray(image).transpose(1, 2, 0)).resize((TILE_PX, TILE_PX))
        sheet.paste(tile, (x, y))
        draw.text((x + 1, y + TILE_PX + 1), f"true {true}"[:18], fill=(0, 100, 0), font=font)
        draw.text((x + 1, y + TILE_PX + 15), f"as {pred}"[:18], fill=(180, 0, 0), font=font)
    path = out_dir / "misclassified.png"
    sheet.save(path)
    return path


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # Pillow without FreeType
        return ImageFont.load_default()
