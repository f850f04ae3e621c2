"""`caltech101:PATH` — Caltech-101 as distributed (`101_ObjectCategories/<class>/image_NNNN.jpg`).

PATH may be the `101_ObjectCategories` folder itself or the folder that holds it.
`BACKGROUND_Google` (clutter, not an object class) is left out unless `?background=true`, and the
split is the paper's per class floor 80 % / floor 10 % / rest, shuffled by the seed: 6,907 / 820 /
950 images on the full set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edgetrain.data.folder import check_folder, resolve_per_class, subfolders
from edgetrain.data.refbase import DatasetRef, check_path
from edgetrain.data.splits import Splits
from edgetrain.data.walk import Walk, count_files

BACKGROUND = "BACKGROUND_Google"


@dataclass(frozen=True)
class Caltech101(DatasetRef):
    """Caltech-101 in its `101_ObjectCategories` layout, split per class 80/10/10 (floors)."""

    path: Path
    background: bool = False  # True: keep BACKGROUND_Google as a class (the paper drops it)

    kind: ClassVar[str] = "caltech101"
    augment_default: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_path(self)


def resolve_caltech(ref: Caltech101, *, seed: int) -> Splits:
    """Resolve a `caltech101:` reference into the paper's per-class split."""
    root = check_folder(ref.path, ref.kind)
    if (root / "101_ObjectCategories").is_dir():
        root = root / "101_ObjectCategories"
    walk = Walk(root)
    dirs, skipped = subfolders(root, walk)
    if not ref.background:
        for d in [d for d in dirs if d.name == BACKGROUND]:
            n = count_files(d)
            skipped.append(
                (
                    str(d),
                    f"{n} files: background clutter, left out as usual (background=true keeps it)",
                )
            )
            dirs.remove(d)
    return resolve_per_class(ref, root, dirs, seed=seed, group=None, skipped=skipped, walk=walk)
