"""Records, the `Splits` a reference resolves to, and the two split rules.

- Per class (the paper's Caltech-101 rule): shuffle each class's files by the seed, then
  floor(80 %) train, floor(10 %) val, the rest test. Integer arithmetic, so 6,907 / 820 / 950 on
  Caltech-101 exactly.
- By group (PKU boards, `folder:?group=`): every group goes whole to one split. The assignment
  is the one closest to 80/10/10 that keeps every class in train and, where the groups allow, in
  test and val; with few groups all assignments are tried, with many a seeded random search.
"""

from __future__ import annotations

import itertools
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from edgetrain.data.refbase import DatasetRef
from edgetrain.errors import EdgeTrainError

SPLIT_NAMES = ("train", "val", "test")
FRACTIONS = (0.8, 0.1, 0.1)  # target share of train, val, test
_EXHAUSTIVE_MAX_GROUPS = 10  # 3**10 = 59,049 assignments, scored in one vectorised pass
_RANDOM_CANDIDATES = 2048


@dataclass(frozen=True, slots=True)
class Record:
    """One sample: where its pixels come from and its label.

    `source` is a human-readable description (the file, plus the crop window or the generator's
    index) used in reports; `path`/`crop`/`index` are what the decoder uses.
    """

    source: str
    label: int
    path: str | None = None  # image file; None for generated samples
    crop: tuple[int, int, int, int] | None = None  # (left, top, right, bottom), EXIF-oriented
    group: str | None = None  # board / group id for group-wise splits
    size: tuple[int, int] | None = None  # (width, height) of the image or of the crop window
    mode: str | None = None  # Pillow mode of the file (RGB, L, CMYK, ...)
    index: int | None = None  # sample index for generated data


@dataclass
class Splits:
    """A resolved dataset: class names, train/val/test records, and what was left out and why.

    `skipped` lists (file, reason) for every file not used: those `resolve` left out (not an
    image, unreadable header, reached twice through a link, ...) and, once `load_split` has run,
    the records that failed to decode, which are also in `dropped[split]`. `counts()` and
    `class_counts()` leave the dropped records out, so after loading they count what is trained
    and evaluated on; `skipped_report()` is the JSON-able list for records. `groups` maps each
    split to the groups (boards) in it, empty for ungrouped data. `warnings` are things a user
    should know that do not stop training (an empty val split, a class absent from test).
    """

    ref: DatasetRef
    classes: list[str]
    train: list[Record]
    val: list[Record]
    test: list[Record]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    groups: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seed: int = 0
    # split -> (source, reason) of its records that failed to decode; filled by `drop`
    dropped: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The canonical reference string (see `edgetrain.data.refs`)."""
        return str(self.ref)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> list[Record]:
        """The records of split `name` (train, val or test)."""
        if name not in SPLIT_NAMES:
            raise EdgeTrainError(
                f"unknown split {name!r}; expected one of {', '.join(SPLIT_NAMES)}"
            )
        return getattr(self, name)

    def kept(self, name: str) -> list[Record]:
        """The records of split `name` less those known to fail to decode (`dropped`)."""
        records = self.split(name)
        gone = {source for source, _ in self.dropped.get(name, ())}
        return [r for r in records if r.source not in gone] if gone else records

    def counts(self) -> dict[str, int]:
        """Samples per split, {"train": n, "val": n, "test": n}, after decode drops: as resolved
        before `load_split`, what the loaded tensors hold after it."""
        return {s: len(self.kept(s)) for s in SPLIT_NAMES}

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Samples per class and split, {class: {"train": n, "val": n, "test": n}}, after decode
        drops (as `counts`)."""
        out = {c: dict.fromkeys(SPLIT_NAMES, 0) for c in self.classes}
        for s in SPLIT_NAMES:
            for label, n in Counter(r.label for r in self.kept(s)).items():
                out[self.classes[label]][s] = n
        return out

    def drop(self, name: str, failed: list[tuple[str, str]]) -> None:
        """Note that records of split `name` failed to decode, as (source, reason): added once to
        `dropped[name]` and to `skipped`. Called by the pixel loaders, not by users."""
        have = self.dropped.setdefault(name, [])
        have += [f for f in failed if f not in have]
        known = set(self.skipped)
        self.skipped += [f for f in failed if f not in known]

    def skipped_report(self) -> list[dict[str, str | None]]:
        """Every skipped file as {"file", "reason", "stage", "split"}, in `skipped` order: stage
        "resolve" (left out before decoding; split None) or "decode" (failed to decode; the split
        it was in). JSON-able; complete once `load_split` has run for every split."""
        at_decode = {f: s for s in SPLIT_NAMES for f in self.dropped.get(s, ())}
        return [
            {
                "file": f,
                "reason": why,
                "stage": "decode" if (f, why) in at_decode else "resolve",
                "split": at_decode.get((f, why)),
            }
            for f, why in self.skipped
        ]


def name_bytes(name: str) -> bytes:
    """A file or class name as bytes for hashing: UTF-8, with the undecodable bytes of a
    non-UTF-8 name (the surrogate escapes `os.fsdecode` makes on Linux, e.g. b'caf\\xe9' ->
    'caf\\udce9') restored. The same as `name.encode()` for every name that has no such byte, so
    seeds and cache keys of ordinary names do not change."""
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no file system decode makes
        return name.encode("utf-8", "surrogatepass")


def printable(name: str) -> str:
    """`name` safe to print or draw: the undecodable bytes of a non-UTF-8 name as `\\xe9`."""
    return name_bytes(name).decode("utf-8", "backslashreplace")


def _class_rng(seed: int, class_name: str) -> np.random.Generator:
    # One stream per class, keyed by its name: adding a class does not reshuffle the others.
    return np.random.default_rng([seed, zlib.crc32(name_bytes(class_name))])


def split_per_class(
    records: list[Record], classes: list[str], *, seed: int
) -> dict[str, list[Record]]:
    """The paper's rule: per class, shuffled by `seed`, floor 80 % train, floor 10 % val, rest test.

    A class with fewer than 2 images cannot have both a training and a test image and raises
    `EdgeTrainError` naming it.
    """
    by_class: dict[int, list[Record]] = {i: [] for i in range(len(classes))}
    for r in records:
        by_class[r.label].append(r)
    out: dict[str, list[Record]] = {s: [] for s in SPLIT_NAMES}
    too_few = [(classes[k], len(v)) for k, v in by_class.items() if len(v) < 2]
    if too_few:
        listed = ", ".join(f"{c!r} ({n})" for c, n in too_few)
        raise EdgeTrainError(
            f"too few images for the 80/10/10 split in class(es) {listed}: each class needs at "
            "least 2 (one to train on, one to test); add images or remove the class folder"
        )
    for k, recs in by_class.items():
        recs = sorted(recs, key=lambda r: r.source)  # file-system order is not deterministic
        order = _class_rng(seed, classes[k]).permutation(len(recs))
        n = len(recs)
        n_train, n_val = n * 8 // 10, n // 10  # integer floors: exact paper counts
        shuffled = [recs[i] for i in order]
        out["train"] += shuffled[:n_train]
        out["val"] += shuffled[n_train : n_train + n_val]
        out["test"] += shuffled[n_train + n_val :]
    return out


def _score(assign: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Badness of group->split assignments. assign: (M, G) in {0,1,2}; counts: (G, K) per class."""
    per_split = np.stack(
        [(assign == s).astype(np.float64) @ counts for s in range(3)], 1
    )  # (M,3,K)
    totals = per_split.sum(2)  # (M, 3)
    n = counts.sum()
    target = np.asarray(FRACTIONS)
    frac_dev = np.abs(totals / n - target).sum(1)
    class_frac = per_split / np.maximum(counts.sum(0), 1)  # (M, 3, K)
    class_dev = np.abs(class_frac - target[None, :, None]).sum(1).mean(1)
    missing = (per_split == 0).sum(2)  # (M, 3) classes absent from each split
    # A class absent from train cannot be learnt; absent from test it cannot be scored.
    return 100.0 * missing[:, 0] + 10.0 * missing[:, 2] + 0.1 * missing[:, 1] + frac_dev + class_dev


def assign_groups(group_counts: dict[str, np.ndarray], *, seed: int) -> dict[str, str]:
    """Assign whole groups to splits; `group_counts` maps a group to its per-class counts (K,).

    Returns {group: split}. Train and test each get at least one group; val may be empty when
    there are too few groups. Deterministic for `seed`.
    """
    names = sorted(group_counts)
    if len(names) < 2:
        raise EdgeTrainError(
            f"only {len(names)} group ({', '.join(names) or 'none'}) found: keeping groups apart "
            "needs at least 2 (one for train, one for test); check the group pattern"
        )
    counts = np.stack([group_counts[g] for g in names]).astype(np.float64)  # (G, K)
    g = len(names)
    rng = np.random.default_rng([seed, 0x5B1])
    if g <= _EXHAUSTIVE_MAX_GROUPS:
        assign = np.array(list(itertools.product((0, 1, 2), repeat=g)), dtype=np.int8)
    else:
        # Random orders cut near the target shares: groups [0, a) test, [a, b) val, rest train.
        n = counts.sum()
        rows = []
        for _ in range(_RANDOM_CANDIDATES):
            perm = rng.permutation(g)
            cum = np.cumsum(counts[perm].sum(1))
            # First cut where the running total reaches each target; train keeps >= 1 group.
            a = int(np.clip(np.searchsorted(cum, FRACTIONS[2] * n) + 1, 1, g - 1))
            b = int(np.clip(np.searchsorted(cum, (FRACTIONS[1] + FRACTIONS[2]) * n) + 1, a, g - 1))
            row = np.zeros(g, dtype=np.int8)
            row[perm[:a]], row[perm[a:b]] = 2, 1
            rows.append(row)
        assign = np.stack(rows)
    ok = ((assign == 0).any(1)) & ((assign == 2).any(1))  # non-empty train and test
    assign = assign[ok]
    scores = _score(assign, counts)
    best = np.flatnonzero(scores <= scores.min() + 1e-9)
    choice = assign[best[rng.integers(len(best))]]  # the seed breaks ties
    return {name: SPLIT_NAMES[int(s)] for name, s in zip(names, choice, strict=True)}


def split_by_group(
    records: list[Record], classes: list[str], *, seed: int
) -> tuple[dict[str, list[Record]], dict[str, list[str]]]:
    """Split so that every group lies in one split; returns (records per split, groups per split)."""
    per_group: dict[str, np.ndarray] = {}
    for r in records:
        assert r.group is not None
        per_group.setdefault(r.group, np.zeros(len(classes), dtype=np.int64))[r.label] += 1
    where = assign_groups(per_group, seed=seed)
    out: dict[str, list[Record]] = {s: [] for s in SPLIT_NAMES}
    for r in sorted(records, key=lambda r: r.source):
        out[where[r.group]].append(r)  # type: ignore[index]
    groups = {s: sorted(g for g, w in where.items() if w == s) for s in SPLIT_NAMES}
    return out, groups


def _where(ref: DatasetRef) -> str:
    return f"{ref.kind}:{getattr(ref, 'path', '')}" if ref.has_path else ref.kind


def check_classes(ref: DatasetRef, classes: list[str]) -> None:
    """Raise `EdgeTrainError` unless there are at least two classes to tell apart."""
    if len(classes) < 2:
        only = f" ({classes[0]!r})" if classes else ""
        raise EdgeTrainError(
            f"{_where(ref)}: found {len(classes)} class{only}; a classifier needs at least 2 "
            "classes (one folder per class)"
        )


def finish(
    ref: DatasetRef,
    classes: list[str],
    parts: dict[str, list[Record]],
    *,
    seed: int,
    skipped: list[tuple[str, str]] | None = None,
    groups: dict[str, list[str]] | None = None,
    warnings: list[str] | None = None,
) -> Splits:
    """Check that the splits can train and test a classifier and wrap them in `Splits`.

    Raises `EdgeTrainError` for a single class, an empty train or test split, or a class with no
    training sample; records an empty val split and classes missing from val/test as warnings.
    """
    warnings = list(warnings or [])
    where = _where(ref)
    check_classes(ref, classes)
    for s in ("train", "test"):
        if not parts[s]:
            raise EdgeTrainError(
                f"{where}: the {s} split is empty; add images (or, for a given split layout, "
                f"the {s}/ folder)"
            )
    present = {s: {r.label for r in parts[s]} for s in SPLIT_NAMES}
    no_train = [c for i, c in enumerate(classes) if i not in present["train"]]
    if no_train:
        raise EdgeTrainError(
            f"{where}: class(es) {', '.join(map(repr, no_train))} have no training images"
            + (" (their groups all went to val/test)" if groups else "")
            + "; add images or remove the class"
        )
    if not parts["val"]:
        warnings.append("the val split is empty (too few images or groups for 10 %)")
    for s in ("val", "test"):
        missing = [c for i, c in enumerate(classes) if i not in present[s]]
        if missing and parts[s]:
            warnings.append(f"class(es) absent from {s}: {', '.join(missing)}")
    return Splits(
        ref=ref,
        classes=list(classes),
        train=parts["train"],
        val=parts["val"],
        test=parts["test"],
        skipped=list(skipped or []),
        groups=groups or {},
        warnings=warnings,
        seed=seed,
    )
