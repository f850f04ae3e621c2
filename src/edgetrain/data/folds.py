"""K-fold cross-validation splits of a resolved data set.

One held-out board measures one board: on the PKU crops the default split tests on one board
template and validates on another, and seeds then move test accuracy by several points. K folds
test every image once, each in a model trained without its group.

The rule, deterministic for a seed:
- The images of all splits the data set resolved to are pooled (a given train/val/test layout
  too) and cut into K folds: by group where every image has one (PKU boards, `folder:?group=`),
  each group whole in one fold, folds balanced by image count and, where the groups allow,
  holding every class; by class otherwise (stratified: each class dealt round-robin in a seeded
  order, so every fold gets floor or ceil of its share).
- Fold i is test. With K >= 3 fold (i + 1) mod K is validation and the rest trains, so the
  validation set spans as many groups as the test set does. With K = 2 validation is carved from
  the training fold: about an eighth of its groups (by group, at least one group stays in train)
  or of each class's images.
"""

from __future__ import annotations

import numpy as np

from edgetrain.data.splits import SPLIT_NAMES, Record, Splits, _class_rng, finish
from edgetrain.errors import EdgeTrainError

MAX_FOLDS = 100
_VAL_SHARE_K2 = 1 / 8  # K = 2: the share of the training fold that validates


def check_folds(folds: int, fold: int) -> None:
    """Refuse K < 2, K above `MAX_FOLDS` and a fold index outside 0..K-1, with one line."""
    if not 2 <= folds <= MAX_FOLDS:
        raise EdgeTrainError(f"folds must be 2..{MAX_FOLDS}, got {folds}")
    if not 0 <= fold < folds:
        raise EdgeTrainError(f"fold must be 0..{folds - 1} for {folds} folds, got {fold}")


def fold_of_records(
    records: list[Record], classes: list[str], *, folds: int, seed: int
) -> tuple[list[int], bool]:
    """The fold (0..K-1) of every record, in order, and whether the folds are by group."""
    grouped = bool(records) and all(r.group is not None for r in records)
    if grouped:
        where = assign_group_folds(_group_counts(records, len(classes)), folds=folds, seed=seed)
        return [where[r.group] for r in records], True  # type: ignore[index]
    return _stratified_folds(records, classes, folds=folds, seed=seed), False


def assign_group_folds(
    group_counts: dict[str, np.ndarray], *, folds: int, seed: int
) -> dict[str, int]:
    """{group: fold}: largest groups first (ties in a seeded order), each to the fold that then
    holds the fewest images, preferring a fold that lacks one of the group's classes. Raises
    `EdgeTrainError` when there are fewer groups than folds."""
    names = sorted(group_counts)
    if len(names) < folds:
        raise EdgeTrainError(
            f"{folds} folds need at least {folds} groups; the data has {len(names)} "
            f"({', '.join(names[:12])}{', ...' if len(names) > 12 else ''}); use fewer folds "
            "or a finer group pattern"
        )
    rng = np.random.default_rng([seed, 0xF01D])
    order = [names[i] for i in rng.permutation(len(names))]
    order.sort(key=lambda g: -int(group_counts[g].sum()))  # stable: the seed breaks ties
    k = len(next(iter(group_counts.values())))
    sizes = np.zeros(folds)
    present = np.zeros((folds, k), dtype=bool)
    mean_size = float(np.mean([c.sum() for c in group_counts.values()]))
    out: dict[str, int] = {}
    for g in order:
        counts = group_counts[g]
        has = counts > 0
        new_classes = (has[None, :] & ~present).sum(1)  # (folds,) classes this group would add
        empty = sizes == 0  # every fold gets a group first
        score = sizes + counts.sum() - mean_size * new_classes - 1e9 * empty
        f = int(np.argmin(score))
        out[g] = f
        sizes[f] += counts.sum()
        present[f] |= has
    return out


def _group_counts(records: list[Record], num_classes: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for r in records:
        out.setdefault(str(r.group), np.zeros(num_classes, dtype=np.int64))[r.label] += 1
    return out


def _stratified_folds(
    records: list[Record], classes: list[str], *, folds: int, seed: int
) -> list[int]:
    index = {id(r): i for i, r in enumerate(records)}
    out = [0] * len(records)
    offset = 0  # continue the round-robin across classes, so fold sizes stay balanced
    for label, name in enumerate(classes):
        recs = sorted((r for r in records if r.label == label), key=lambda r: r.source)
        order = _class_rng(seed, name).permutation(len(recs))
        for j, i in enumerate(order):
            out[index[id(recs[i])]] = (offset + j) % folds
        offset += len(recs)
    return out


def fold_splits(splits: Splits, *, folds: int, fold: int, seed: int) -> Splits:
    """`splits` re-cut into fold `fold` of `folds` (see the module's rule); skipped files and
    warnings carry over, `groups` names the groups of each split."""
    check_folds(folds, fold)
    records = sorted((r for s in SPLIT_NAMES for r in splits.split(s)), key=lambda r: r.source)
    which, grouped = fold_of_records(records, splits.classes, folds=folds, seed=seed)
    val_fold = (fold + 1) % folds if folds >= 3 else None
    parts: dict[str, list[Record]] = {s: [] for s in SPLIT_NAMES}
    for r, f in zip(records, which, strict=True):
        parts["test" if f == fold else "val" if f == val_fold else "train"].append(r)
    warnings = [w for w in splits.warnings if "val split is empty" not in w]
    if val_fold is None:
        parts["train"], parts["val"] = carve_val(parts["train"], splits.classes, grouped, seed)
        if not parts["val"]:
            warnings.append(
                "2 folds of 2 groups leave no group for validation: the val split is empty"
            )
    groups = {}
    if grouped:
        groups = {s: sorted({str(r.group) for r in parts[s]}) for s in SPLIT_NAMES}
    out = finish(
        splits.ref,
        splits.classes,
        parts,
        seed=seed,
        skipped=splits.skipped,
        groups=groups,
        warnings=warnings,
    )
    if val_fold is None and not parts["val"]:  # ours says why; finish's generic one goes
        out.warnings = [w for w in out.warnings if "too few images or groups" not in w]
    return out


def carve_val(
    train: list[Record], classes: list[str], grouped: bool, seed: int
) -> tuple[list[Record], list[Record]]:
    """(train, val): an eighth of the training images held out for validation, as whole groups
    (at least one group stays in train) or per class; deterministic for `seed`. Used for a
    2-fold training fold and for a given layout without a val/ folder."""
    if grouped:
        names = sorted({str(r.group) for r in train})
        if len(names) < 2:
            return train, []
        rng = np.random.default_rng([seed, 0xCA7E])
        order = [names[i] for i in rng.permutation(len(names))]
        target, taken, held = _VAL_SHARE_K2 * len(train), 0, set()
        sizes = {g: sum(1 for r in train if r.group == g) for g in names}
        for g in order[:-1]:  # at least one group stays in train
            if taken >= target:
                break
            held.add(g)
            taken += sizes[g]
        return [r for r in train if r.group not in held], [r for r in train if r.group in held]
    keep, val = [], []
    for label, name in enumerate(classes):
        recs = sorted((r for r in train if r.label == label), key=lambda r: r.source)
        order = _class_rng(seed + 1, name).permutation(len(recs))
        n_val = int(len(recs) * _VAL_SHARE_K2) if len(recs) >= 2 else 0
        val += [recs[i] for i in order[:n_val]]
        keep += [recs[i] for i in order[n_val:]]
    return keep, val


def describe_folds(splits: Splits, *, folds: int, seed: int) -> list[dict[str, object]]:
    """One row per fold for `edgetrain data inspect --folds K`: its images, its images per
    class and its groups (the images and groups it tests on)."""
    check_folds(folds, 0)
    records = sorted((r for s in SPLIT_NAMES for r in splits.split(s)), key=lambda r: r.source)
    which, grouped = fold_of_records(records, splits.classes, folds=folds, seed=seed)
    rows = []
    for f in range(folds):
        mine = [r for r, w in zip(records, which, strict=True) if w == f]
        per_class = dict.fromkeys(splits.classes, 0)
        for r in mine:
            per_class[splits.classes[r.label]] += 1
        groups = sorted({str(r.group) for r in mine}) if grouped else []
        rows.append({"fold": f, "images": len(mine), "per_class": per_class, "groups": groups})
    return rows
