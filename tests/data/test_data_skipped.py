"""Issue 14, item 11: after `load_split`, a `Splits` holds every skipped file with its reason and
stage (left out when resolving, or failed to decode) and counts what the tensors hold."""

from __future__ import annotations

import json
from pathlib import Path

from edgetrain.cli import main
from edgetrain.data import SPLIT_NAMES, load_split, resolve


def _dataset(make_classes, image_bytes) -> tuple[Path, Path]:
    root = make_classes({"a": 10, "b": 10})
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "b" / "empty.jpg").write_bytes(b"")
    data = image_bytes(size=(160, 120), seed=7)
    victim = root / "b" / "img_003.jpg"
    victim.write_bytes(data[: len(data) // 2])  # header intact: only decoding finds it
    return root, victim


def _load_all(splits, cache_dir: Path) -> dict[str, int]:
    return {
        s: len(load_split(splits, s, resolution=16, cache_dir=cache_dir)[1]) for s in SPLIT_NAMES
    }


def test_counts_after_loading_are_what_the_tensors_hold(make_classes, image_bytes, cache_dir):
    root, victim = _dataset(make_classes, image_bytes)
    s = resolve(f"folder:{root}")
    assert s.counts() == {"train": 16, "val": 2, "test": 2}  # resolved: decoding not yet tried
    loaded = _load_all(s, cache_dir)
    assert s.counts() == loaded  # after: the truncated file is not counted
    assert sum(loaded.values()) == 19
    per_class = s.class_counts()
    assert sum(per_class["b"].values()) == 9 and sum(per_class["a"].values()) == 10
    split = next(sp for sp in SPLIT_NAMES if any(r.path == str(victim) for r in s.split(sp)))
    assert [f for f, _ in s.dropped[split]] == [str(victim)]
    # A fresh resolve that reads the decoded split from the cache knows the same.
    s2 = resolve(f"folder:{root}")
    assert _load_all(s2, cache_dir) == loaded and s2.counts() == loaded
    assert s2.skipped == s.skipped


def test_skipped_report_lists_every_file_with_reason_and_stage(
    make_classes, image_bytes, cache_dir
) -> None:
    root, _ = _dataset(make_classes, image_bytes)
    s = resolve(f"folder:{root}")
    _load_all(s, cache_dir)
    report = {Path(r["file"]).name: r for r in s.skipped_report()}
    assert set(report) == {"notes.txt", "empty.jpg", "img_003.jpg"}
    assert report["notes.txt"]["stage"] == "resolve" and report["notes.txt"]["split"] is None
    assert "empty file" in report["empty.jpg"]["reason"]
    assert report["img_003.jpg"]["stage"] == "decode"
    assert report["img_003.jpg"]["split"] in SPLIT_NAMES
    assert "truncated" in report["img_003.jpg"]["reason"]
    json.dumps(s.skipped_report())  # JSON-able as it is
    # Loading a split again does not list a file twice.
    _load_all(s, cache_dir)
    assert len(s.skipped_report()) == 3


def test_inspect_with_decode_reports_counts_after_decoding(
    make_classes, image_bytes, cache_dir, capsys
) -> None:
    root, _ = _dataset(make_classes, image_bytes)
    argv = [
        "data",
        "inspect",
        f"folder:{root}",
        "--json",
        "--decode",
        "--cache-dir",
        str(cache_dir),
    ]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert sum(out["splits"].values()) == 19
    assert sorted(r["stage"] for r in out["skipped"]) == ["decode", "resolve", "resolve"]
