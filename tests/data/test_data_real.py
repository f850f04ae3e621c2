"""Acceptance on ../shared/data (skipped cleanly where it is absent): counts, splits, no leaks."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from edgetrain.data import load_split, resolve

pytestmark = pytest.mark.shared_data


def _no_group_in_two_splits(splits) -> None:
    where: dict[str, str] = {}
    for s in ("train", "val", "test"):
        for r in splits.split(s):
            assert where.setdefault(r.group, s) == s, f"group {r.group} in {where[r.group]} and {s}"
    for s, groups in splits.groups.items():
        assert set(groups) == {r.group for r in splits.split(s)}


def test_caltech101_paper_split(shared_data: Path) -> None:
    s = resolve(f"caltech101:{shared_data / 'caltech-101'}", seed=0)
    assert len(s.classes) == 101 and "BACKGROUND_Google" not in s.classes
    assert s.counts() == {"train": 6907, "val": 820, "test": 950}
    assert [Path(f).name for f, _ in s.skipped] == ["BACKGROUND_Google"]  # reported, not silent
    other = resolve(f"caltech101:{shared_data / 'caltech-101'}", seed=1)
    assert other.counts() == s.counts()
    assert {r.source for r in other.test} != {r.source for r in s.test}
    again = resolve(f"caltech101:{shared_data / 'caltech-101'}", seed=0)
    assert again.test == s.test
    assert Counter(r.mode for r in s.train + s.val + s.test)["L"] > 0  # grayscale files present


def test_caltech101_with_background_has_102_classes(shared_data: Path) -> None:
    s = resolve(f"caltech101:{shared_data / 'caltech-101'}?background=true")
    assert len(s.classes) == 102
    assert any(Path(f).name == "tmp" for f, _ in s.skipped)  # the extension-less file, reported


def test_caltech101_subset_decodes_including_grayscale(shared_data: Path, cache_dir: Path) -> None:
    s = resolve(f"caltech101:{shared_data / 'caltech-101'}")
    gray = [r for r in s.test if r.mode == "L"][:4]
    part = dataclasses.replace(s, test=[*s.test[:12], *gray])
    x, y = load_split(part, "test", resolution=64, cache_dir=cache_dir)
    assert x.shape == (16, 3, 64, 64) and x.dtype == torch.uint8
    assert torch.equal(x[-1, 0], x[-1, 1])  # grayscale replicated to RGB
    assert y.tolist() == [r.label for r in part.test]


def test_pku_pcb_boards(shared_data: Path, cache_dir: Path) -> None:
    s = resolve(f"pku-pcb:{shared_data / 'pku-market-pcb'}", seed=0)
    assert len(s.classes) == 6
    assert sum(s.counts().values()) == 134
    assert s.skipped == []
    _no_group_in_two_splits(s)
    assert all(len(r.group) == 2 and Path(r.path).name.startswith(r.group) for r in s.train)
    assert {r.label for r in s.train} == set(range(6))
    assert {r.label for r in s.test} == set(range(6))
    for r in s.train + s.val + s.test:  # square windows inside the board, at least min_size
        left, top, right, bottom = r.crop
        w, h = Image.open(r.path).size
        assert right - left == bottom - top >= 128
        assert left >= 0 and top >= 0 and right <= w and bottom <= h
    part = dataclasses.replace(s, val=s.val[:6])
    x, _ = load_split(part, "val", resolution=48, cache_dir=cache_dir)
    assert x.shape == (6, 3, 48, 48)


def test_pku_crops_folder_grouped_by_board(shared_data: Path) -> None:
    s = resolve(rf"folder:{shared_data / 'pku-market-pcb-crops'}?group=^(\d+)_", seed=0)
    assert len(s.classes) == 6
    assert sum(s.counts().values()) == 2953
    _no_group_in_two_splits(s)
    assert len(s.groups["train"]) + len(s.groups["val"]) + len(s.groups["test"]) == 10
    assert all(s.counts()[k] > 0 for k in ("train", "val", "test"))
