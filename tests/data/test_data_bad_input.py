"""Issue 3, section 3: every kind of bad input gives a clear error before training or a skip
reported by file — never a crash mid-epoch, never a silent drop."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from edgetrain.data import BatchLoader, load_split, resolve
from edgetrain.errors import EdgeTrainError


def _reasons(splits) -> dict[str, str]:
    return {Path(f).name: why for f, why in splits.skipped}


def _train_one_epoch_each(splits, cache_dir: Path) -> None:
    """Decode every split and iterate all batches: bad files must not surface here."""
    for split in ("train", "val", "test"):
        images, labels = load_split(splits, split, resolution=32, cache_dir=cache_dir)
        if len(labels):
            loader = BatchLoader(images, labels, batch_size=4, shuffle=True, augment=True, seed=0)
            assert sum(len(y) for _, y in loader.epoch(0)) == len(labels)


def test_corrupt_zero_byte_and_non_image_files_are_skipped_with_reasons(
    make_classes, cache_dir
) -> None:
    root = make_classes({"a": 10, "b": 10})
    (root / "a" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 20)
    (root / "a" / "empty.png").write_bytes(b"")
    (root / "b" / "notes.txt").write_text("a README inside a class folder")
    (root / "b" / "fake.jpg").write_text("plain text with an image extension")
    (root / "b" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    s = resolve(f"folder:{root}")
    why = _reasons(s)
    assert "corrupt" in why["corrupt.jpg"]
    assert "empty file (0 bytes)" in why["empty.png"]
    assert "not an image file (.txt)" in why["notes.txt"]
    assert "not an image Pillow can read" in why["fake.jpg"]
    assert why[".DS_Store"] == "hidden file"
    assert sum(s.counts().values()) == 20  # the good files, all of them
    _train_one_epoch_each(s, cache_dir)


def test_truncated_image_is_skipped_at_decode_and_reported(
    make_classes, cache_dir, image_bytes
) -> None:
    root = make_classes({"a": 10, "b": 10})
    data = image_bytes(size=(160, 120), seed=7)
    victim = next(p for p in sorted((root / "a").iterdir()))
    victim.write_bytes(data[: len(data) // 2])  # header intact, pixel data cut
    s = resolve(f"folder:{root}")
    assert sum(s.counts().values()) == 20  # the header probe cannot tell
    split = next(
        sp for sp in ("train", "val", "test") if any(r.path == str(victim) for r in s.split(sp))
    )
    images, labels = load_split(s, split, resolution=32, cache_dir=cache_dir)
    assert len(labels) == len(s.split(split)) - 1
    assert "truncated" in _reasons(s)[victim.name]
    # The cached pass reports the same skip to a fresh resolve.
    s2 = resolve(f"folder:{root}")
    images2, _ = load_split(s2, split, resolution=32, cache_dir=cache_dir)
    assert images2.shape == images.shape
    assert "truncated" in _reasons(s2)[victim.name]
    _train_one_epoch_each(s, cache_dir)


def test_a_split_where_nothing_decodes_is_an_error(tmp_path, image_bytes, cache_dir) -> None:
    root = tmp_path / "cut"
    for cls in ("a", "b"):
        for i in range(2):
            data = image_bytes(size=(160, 120), seed=i)
            (root / cls).mkdir(parents=True, exist_ok=True)
            (root / cls / f"{i}.jpg").write_bytes(data[: len(data) // 2])
    s = resolve(f"folder:{root}")
    with pytest.raises(EdgeTrainError, match="none of the 2 train images could be decoded"):
        load_split(s, "train", resolution=32, cache_dir=cache_dir)


def test_decompression_bomb_is_a_skip(make_classes, monkeypatch, write_image) -> None:
    root = make_classes({"a": 4, "b": 4})
    write_image(root / "a" / "huge.png", size=(400, 300), fmt="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)  # 400 x 300 = 120,000 > 2x limit
    s = resolve(f"folder:{root}")
    assert "decompression bomb" in _reasons(s)["huge.png"]
    assert sum(s.counts().values()) == 8


def test_folder_with_no_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    (tmp_path / "empty" / "cats" / "readme.md").write_text("nothing here")
    with pytest.raises(EdgeTrainError, match="no readable images under"):
        resolve(f"folder:{tmp_path / 'empty'}")
    (tmp_path / "bare").mkdir()
    with pytest.raises(EdgeTrainError, match="no readable images under"):
        resolve(f"folder:{tmp_path / 'bare'}")


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EdgeTrainError, match="does not exist"):
        resolve(f"caltech101:{tmp_path / 'nope'}")
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgeTrainError, match="is not a folder"):
        resolve(f"folder:{tmp_path / 'file'}")


def test_class_with_too_few_images_for_its_split_is_an_error(make_classes) -> None:
    root = make_classes({"many": 10, "lonely": 1})
    with pytest.raises(EdgeTrainError, match=r"too few images.*'lonely' \(1\)"):
        resolve(f"folder:{root}")


def test_empty_class_folder_is_an_error_naming_it(make_classes) -> None:
    root = make_classes({"a": 5, "b": 5})
    (root / "c").mkdir()
    with pytest.raises(EdgeTrainError, match=r"'c' \(0\)"):
        resolve(f"caltech101:{root}")


def test_class_whose_groups_cannot_reach_train_is_an_error(make_classes) -> None:
    # Each class lives in a single group of its own: one of them must go to test.
    root = make_classes({"a": 5, "b": 5}, name="{cls}_{i}.jpg")
    with pytest.raises(EdgeTrainError, match="have no training images"):
        resolve(rf"folder:{root}?group=^([ab])_")


def test_single_class_is_an_error(make_classes) -> None:
    root = make_classes({"only": 20})
    with pytest.raises(EdgeTrainError, match=r"found 1 class \('only'\).*at least 2 classes"):
        resolve(f"folder:{root}")


def test_given_layout_without_test_split_is_an_error(make_classes) -> None:
    make_classes({"a": 3, "b": 3}, root="given/train")
    (make_classes({}, root="given/test"))
    with pytest.raises(EdgeTrainError, match="the test split is empty"):
        resolve(f"folder:{make_classes({}, root='given')}")


def test_empty_val_split_is_allowed_and_reported(make_classes) -> None:
    root = make_classes({"a": 5, "b": 5})  # floor(10 % of 5) = 0 val images
    s = resolve(f"folder:{root}")
    assert s.counts()["val"] == 0
    assert any("val split is empty" in w for w in s.warnings)


def test_file_names_outside_the_group_pattern_are_skipped(make_classes, write_image) -> None:
    root = make_classes({"a": 12, "b": 12}, name="{i:02d}_{cls}.jpg")
    write_image(root / "a" / "stray.jpg")
    s = resolve(rf"folder:{root}?group=^(\d)\d_")
    assert "does not match the group pattern" in _reasons(s)["stray.jpg"]


# --- Pascal VOC (pku-pcb) ------------------------------------------------------------------


def test_pku_miniature_resolves(make_pku) -> None:
    s = resolve(f"pku-pcb:{make_pku()}")
    assert s.classes == ["Missing_hole", "Short", "Spur"]
    assert sum(s.counts().values()) == 3 * 5 * 2
    assert s.skipped == []


def test_xml_box_outside_the_image_is_a_skip(make_pku, voc_xml) -> None:
    root = make_pku()
    xml = root / "Annotations" / "Short" / "02_short_01.xml"
    xml.write_text(
        voc_xml(
            "02_short_01.jpg", "Short", [("short", 20, 30, 50, 50), ("short", 500, 400, 560, 450)]
        )
    )
    s = resolve(f"pku-pcb:{root}")
    assert sum(s.counts().values()) == 29
    ((where, why),) = [(f, w) for f, w in s.skipped]
    assert where.endswith("02_short_01.xml#object1")
    assert "lies outside the 200 x 160 image" in why


def test_xml_box_one_pixel_past_the_edge_is_clipped_not_dropped(make_pku, voc_xml) -> None:
    root = make_pku()
    xml = root / "Annotations" / "Spur" / "03_spur_01.xml"
    xml.write_text(voc_xml("03_spur_01.jpg", "Spur", [("spur", 150, 120, 201, 161)]))
    s = resolve(f"pku-pcb:{root}")
    assert s.skipped == []
    rec = next(r for sp in ("train", "val", "test") for r in s.split(sp) if "03_spur" in r.source)
    left, top, right, bottom = rec.crop
    assert 0 <= left < right <= 200 and 0 <= top < bottom <= 160


def test_xml_whose_image_is_missing_is_a_skip(make_pku) -> None:
    root = make_pku()
    (root / "images" / "Spur" / "04_spur_01.jpg").unlink()
    s = resolve(f"pku-pcb:{root}")
    assert "its image (04_spur_01.jpg) is missing" in _reasons(s)["04_spur_01.xml"]
    assert sum(s.counts().values()) == 28


def test_image_without_xml_and_broken_xml_are_skips(make_pku) -> None:
    root = make_pku()
    (root / "Annotations" / "Short" / "05_short_01.xml").unlink()
    (root / "Annotations" / "Spur" / "01_spur_01.xml").write_text("<annotation><object>")
    s = resolve(f"pku-pcb:{root}")
    why = _reasons(s)
    assert why["05_short_01.jpg"] == "no annotation file for this image"
    assert "invalid XML" in why["01_spur_01.xml"]


def test_xml_entity_expansion_is_refused(make_pku) -> None:
    root = make_pku()
    bomb = (
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>\n'
        "<annotation><object><name>&lol2;</name></object></annotation>"
    )
    (root / "Annotations" / "Short" / "01_short_01.xml").write_text(bomb)
    external = '<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><annotation>&x;</annotation>'
    (root / "Annotations" / "Short" / "02_short_01.xml").write_text(external)
    s = resolve(f"pku-pcb:{root}")
    why = _reasons(s)
    assert "DOCTYPE/ENTITY declarations are not allowed" in why["01_short_01.xml"]
    assert "DOCTYPE/ENTITY declarations are not allowed" in why["02_short_01.xml"]


def test_xml_with_unknown_class_or_empty_box_is_a_skip(make_pku, voc_xml) -> None:
    root = make_pku()
    (root / "Annotations" / "Spur" / "02_spur_01.xml").write_text(
        voc_xml("02_spur_01.jpg", "Spur", [("scratch", 10, 10, 40, 40), ("spur", 30, 30, 30, 60)])
    )
    s = resolve(f"pku-pcb:{root}")
    reasons = [w for f, w in s.skipped if "02_spur_01.xml" in f]
    assert any("class 'scratch' is not one of" in w for w in reasons)
    assert any("empty box" in w for w in reasons)


def test_pku_without_its_layout_is_an_error(make_classes) -> None:
    with pytest.raises(EdgeTrainError, match="needs images/<Class>"):
        resolve(f"pku-pcb:{make_classes({'a': 2, 'b': 2})}")


def test_pku_single_class_is_an_error(make_pku) -> None:
    with pytest.raises(EdgeTrainError, match="found 1 class"):
        resolve(f"pku-pcb:{make_pku(classes=('Short',))}")
