"""`folder:PATH` — class-per-folder images, split here or as given.

Two layouts, told apart by the folder names directly under PATH:

- `PATH/<class>/*`: split by the per-class 80/10/10 rule, or, with `?group=REGEX`, group-wise so
  that files whose names share a group (e.g. the PKU crops' board template `^(\\d+)_`) stay in
  one split.
- `PATH/train/<class>/*`, `PATH/test/<class>/*` and optionally `PATH/val/<class>/*` (also
  `trainval`/`training`, `valid`/`validation`, `testing`): used as given. Without a val folder,
  validation is carved from the training images (an eighth of them: of their groups with
  `?group=`, else of each class), and the splits' warnings say so. With `?group=` a group found
  in two splits is reported as a warning (the files are not moved).

A folder that mixes split folders with other folders (`train/` beside `cats/`) is refused: it is
neither layout, and reading it as classes would train a "train vs cats" classifier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edgetrain.data.decode import IMAGE_EXTENSIONS, probe_files
from edgetrain.data.folds import carve_val
from edgetrain.data.refbase import DatasetRef, check_path, check_regex
from edgetrain.data.splits import (
    SPLIT_NAMES,
    Record,
    Splits,
    check_classes,
    finish,
    split_by_group,
    split_per_class,
)
from edgetrain.data.walk import Walk
from edgetrain.errors import EdgeTrainError

_SPLIT_ALIASES = {
    "train": "train",
    "trainval": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


@dataclass(frozen=True)
class Folder(DatasetRef):
    """Class-per-folder images: `PATH/<class>/*` (split here) or `PATH/{train,val,test}/<class>/*`."""

    path: Path
    group: str | None = None  # regex on the file name; files of one group stay in one split

    kind: ClassVar[str] = "folder"

    def __post_init__(self) -> None:
        check_path(self)
        if self.group is not None:
            check_regex(self.group, "folder")


def check_folder(path: Path, kind: str) -> Path:
    """`path` made absolute (`~` expanded), or `EdgeTrainError` if it is not an existing folder.

    Records hold absolute paths, so a later change of working directory cannot break decoding.
    """
    root = Path(path).expanduser().absolute()
    if not root.exists():
        raise EdgeTrainError(f"{kind}: {root} does not exist; check the path in the reference")
    if not root.is_dir():
        raise EdgeTrainError(f"{kind}: {root} is not a folder")
    return root


def subfolders(root: Path, walk: Walk) -> tuple[list[Path], list[tuple[str, str]]]:
    """Visible subfolders of `root`, claimed in `walk`, and (file, reason) for loose files, hidden
    entries and folders that are links to the root, a parent or an earlier sibling."""
    dirs, skipped = [], []
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            skipped.append((str(p), "hidden " + ("folder" if p.is_dir() else "file")))
        elif p.is_dir():
            reason = walk.claim_folder(p)
            if reason is None:
                dirs.append(p)
            else:
                skipped.append((str(p), reason))
        else:
            skipped.append((str(p), "not inside a class folder"))
    return dirs, skipped


def group_of(pattern: re.Pattern[str], name: str) -> str | None:
    """The group a file name belongs to: the first capture group, or the whole match."""
    m = pattern.search(name)
    if m is None:
        return None
    return m.group(1) if pattern.groups else m.group(0)


def collect_classes(
    class_dirs: list[Path], classes: list[str], walk: Walk, *, group: str | None = None
) -> tuple[list[Record], list[tuple[str, str]]]:
    """Records for the images in each class folder (recursive, each file once across `walk`),
    probed, with their group.

    Unreadable files, non-images, files reached twice through links and (with `group`) names the
    pattern does not match come back as (file, reason).
    """
    pattern = re.compile(group) if group is not None else None
    index = {c: i for i, c in enumerate(classes)}
    records: list[Record] = []
    skipped: list[tuple[str, str]] = []
    for d in class_dirs:
        paths, skip = walk.scan(d)
        skipped += skip
        infos, bad = probe_files(paths)
        skipped += bad
        for p in paths:
            info = infos.get(p)
            if info is None:
                continue
            g = None
            if pattern is not None:
                g = group_of(pattern, p.name)
                if g is None:
                    skipped.append(
                        (str(p), f"file name does not match the group pattern {group!r}")
                    )
                    continue
            records.append(
                Record(
                    source=str(p),
                    label=index[d.name],
                    path=str(p),
                    group=g,
                    size=(info.width, info.height),
                    mode=info.mode,
                )
            )
    return records, skipped


def no_images_error(
    kind: str, root: Path, skipped: list[tuple[str, str]] | None = None
) -> EdgeTrainError:
    exts = ", ".join(sorted(IMAGE_EXTENSIONS))
    why = ""
    if skipped:
        f, reason = skipped[0]
        why = f" ({len(skipped)} file(s) skipped, e.g. {f}: {reason})"
    return EdgeTrainError(
        f"{kind}: no readable images under {root}{why}; expected {root}/<class>/<image> "
        f"(or {root}/{{train,val,test}}/<class>/<image>) with one of the extensions {exts}"
    )


def resolve_per_class(
    ref: DatasetRef,
    root: Path,
    class_dirs: list[Path],
    *,
    seed: int,
    group: str | None,
    skipped: list[tuple[str, str]],
    walk: Walk,
) -> Splits:
    """Resolve `root/<class>/*` (folders claimed in `walk`): probe, then split per class or by
    group."""
    kind = ref.kind
    classes = [d.name for d in class_dirs]
    if not classes:
        raise no_images_error(kind, root, skipped)
    records, skip = collect_classes(class_dirs, classes, walk, group=group)
    skipped = skipped + skip
    if not records:
        raise no_images_error(kind, root, skipped)
    check_classes(ref, classes)
    groups: dict[str, list[str]] = {}
    if group is None:
        parts = split_per_class(records, classes, seed=seed)
    else:
        parts, groups = split_by_group(records, classes, seed=seed)
    return finish(
        ref, classes, parts, seed=seed, skipped=skipped, groups=groups, warnings=walk.warning()
    )


def _resolve_given(
    ref: Folder,
    root: Path,
    split_dirs: dict[str, Path],
    skipped: list[tuple[str, str]],
    seed: int,
    walk: Walk,
) -> Splits:
    """Resolve `root/{train,val,test}/<class>/*` as given (each file once across the splits)."""
    per_split_dirs: dict[str, list[Path]] = {}
    for s, d in split_dirs.items():
        dirs, skip = subfolders(d, walk)
        per_split_dirs[s] = dirs
        skipped += skip
    classes = sorted({d.name for dirs in per_split_dirs.values() for d in dirs})
    if not classes:
        raise no_images_error(ref.kind, root)
    parts: dict[str, list[Record]] = {s: [] for s in SPLIT_NAMES}
    for s, dirs in per_split_dirs.items():
        records, skip = collect_classes(dirs, classes, walk, group=ref.group)
        parts[s] = sorted(records, key=lambda r: r.source)
        skipped += skip
    if not any(parts.values()):
        raise no_images_error(ref.kind, root, skipped)
    warnings = walk.warning()
    if not parts["val"] and parts["train"]:
        grouped = ref.group is not None
        parts["train"], parts["val"] = carve_val(parts["train"], classes, grouped, seed)
        how = "of its groups" if grouped else "of each class's images"
        warnings.append(
            f"no val/ folder: validation carved from the training images ({len(parts['val'])} "
            f"images, an eighth {how}); the test/ folder is used as given"
        )
    groups: dict[str, list[str]] = {}
    if ref.group is not None:
        groups = {s: sorted({r.group for r in parts[s] if r.group}) for s in SPLIT_NAMES}
        seen: dict[str, list[str]] = {}
        for s in SPLIT_NAMES:
            for g in groups[s]:
                seen.setdefault(g, []).append(s)
        leaks = {g: ss for g, ss in seen.items() if len(ss) > 1}
        if leaks:
            shown = "; ".join(f"{g} in {'+'.join(ss)}" for g, ss in sorted(leaks.items())[:10])
            warnings.append(
                f"{len(leaks)} group(s) appear in more than one of the given splits ({shown})"
            )
    return finish(ref, classes, parts, seed=seed, skipped=skipped, groups=groups, warnings=warnings)


def resolve_folder(ref: Folder, *, seed: int) -> Splits:
    """Resolve a `folder:` reference (layouts in the module docstring)."""
    root = check_folder(ref.path, ref.kind)
    walk = Walk(root)
    dirs, skipped = subfolders(root, walk)
    split_dirs = {
        _SPLIT_ALIASES[d.name.lower()]: d for d in dirs if d.name.lower() in _SPLIT_ALIASES
    }
    if "train" in split_dirs and len(split_dirs) == len(dirs):
        return _resolve_given(ref, root, split_dirs, skipped, seed, walk)
    if split_dirs:
        named = ", ".join(sorted(d.name for d in split_dirs.values()))
        others = ", ".join(sorted(d.name for d in dirs if d not in split_dirs.values())[:5])
        raise EdgeTrainError(
            f"folder:{root}: folders named like splits ({named}) beside other folders "
            f"({others or 'none'}) and no train/ folder; expected {root}/<class>/<image> or "
            f"{root}/{{train|trainval,val,test}}/<class>/<image>"
        )
    return resolve_per_class(
        ref, root, dirs, seed=seed, group=ref.group, skipped=skipped, walk=walk
    )
