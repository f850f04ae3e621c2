"""Issue 14, item 1: symbolic links in a dataset are followed, but every folder and file counts
once (by what it is on disk), loops are not walked, and what was left out is said."""

from __future__ import annotations

import os

import pytest

from edgetrain.data import resolve

pytestmark = pytest.mark.skipif(os.name == "nt", reason="symbolic links need privileges there")


def _paths(splits) -> list[str]:
    return [r.path for s in ("train", "val", "test") for r in splits.split(s)]


def _real_files(splits) -> list[str]:
    return [os.path.realpath(p) for p in _paths(splits)]


def test_a_link_loop_inside_a_class_folder_counts_each_file_once(make_classes) -> None:
    root = make_classes({"a": 10, "b": 10})
    before = resolve(f"folder:{root}")
    (root / "a" / "selfdir").symlink_to(".")  # ln -s . a/selfdir
    (root / "b" / "deep").mkdir()
    (root / "b" / "deep" / "up").symlink_to("..", target_is_directory=True)
    s = resolve(f"folder:{root}")
    assert (
        s.class_counts()
        == before.class_counts()
        == {
            "a": {"train": 8, "val": 1, "test": 1},
            "b": {"train": 8, "val": 1, "test": 1},
        }
    )
    assert _paths(s) == _paths(before)  # same records, same split
    reals = _real_files(s)
    assert len(reals) == len(set(reals)) == 20  # no image in two splits
    why = dict(s.skipped)
    assert "symbolic link loop" in why[str(root / "a" / "selfdir")]
    assert "symbolic link loop" in why[str(root / "b" / "deep" / "up")]
    assert any("reached a second time through links" in w for w in s.warnings)


@pytest.mark.parametrize("kind", ["folder", "caltech101"])
def test_a_link_to_the_root_or_a_parent_is_a_loop(make_classes, kind) -> None:
    root = make_classes({"a": 10, "b": 10})
    (root / "b" / "top").symlink_to(root, target_is_directory=True)
    (root / "a" / "parent").symlink_to(root.parent, target_is_directory=True)
    (root / "zz_root").symlink_to(".")  # a class folder that is the dataset itself
    s = resolve(f"{kind}:{root}")
    assert s.classes == ["a", "b"]
    assert sum(s.counts().values()) == 20
    why = dict(s.skipped)
    for p in (root / "b" / "top", root / "a" / "parent", root / "zz_root"):
        assert "symbolic link loop" in why[str(p)], p


def test_linked_files_and_folders_count_once_across_classes_and_splits(
    tmp_path, write_image
) -> None:
    root = tmp_path / "given"
    for split, n in (("train", 8), ("test", 3)):
        for cls in ("a", "b"):
            for i in range(n):
                write_image(root / split / cls / f"{split}_{cls}_{i}.jpg", seed=i)
    # The test images linked into train, one by one and as a folder: each file counts once.
    (root / "train" / "a" / "t0.jpg").symlink_to(root / "test" / "a" / "test_a_0.jpg")
    (root / "train" / "b" / "tests").symlink_to(root / "test" / "b")
    (root / "train" / "b" / "again.jpg").symlink_to(root / "train" / "b" / "train_b_0.jpg")
    os.link(root / "train" / "a" / "train_a_1.jpg", root / "train" / "a" / "hard.jpg")
    s = resolve(f"folder:{root}")
    # no val/ folder: an eighth of each class's 8 training files is carved out for validation
    assert s.counts() == {"train": 14, "val": 2, "test": 6}
    reals = _real_files(s)
    assert len(reals) == len(set(reals))
    why = dict(s.skipped)
    assert "same folder as" in why[str(root / "train" / "b" / "tests")]
    assert "same file as" in why[str(root / "train" / "b" / "again.jpg")]  # the real file stays
    assert "same file as" in why[str(root / "train" / "a" / "train_a_1.jpg")]  # 'hard' sorts first
    assert "same file as" in why[str(root / "train" / "a" / "t0.jpg")]  # test/ is walked first
    assert any("reached a second time" in w for w in s.warnings)


def test_a_class_folder_linked_to_another_is_left_out(make_classes) -> None:
    root = make_classes({"a": 10, "b": 10, "c": 10})
    (root / "d").symlink_to("a")
    s = resolve(f"folder:{root}")
    assert s.classes == ["a", "b", "c"]
    assert "same folder as" in dict(s.skipped)[str(root / "d")]


def test_links_to_files_outside_the_dataset_are_followed(tmp_path, write_image) -> None:
    pool = tmp_path / "pool"
    root = tmp_path / "ds"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(5):
            f = write_image(pool / f"{cls}{i}.jpg", seed=i)
            (root / cls / f"{i}.jpg").symlink_to(f)
    (root / "a" / "broken.jpg").symlink_to(tmp_path / "nowhere.jpg")
    fifo = root / "b" / "pipe.jpg"
    os.mkfifo(fifo)  # would block a decoder that opened it
    s = resolve(f"folder:{root}")
    assert sum(s.counts().values()) == 10
    why = dict(s.skipped)
    assert why[str(root / "a" / "broken.jpg")] == "broken symbolic link"
    assert "not a regular file" in why[str(fifo)]
    assert not s.warnings or not any("second time" in w for w in s.warnings)


def test_pku_annotations_and_images_reached_twice_count_once(make_pku) -> None:
    root = make_pku()
    before = resolve(f"pku-pcb:{root}")
    (root / "images" / "Short" / "loop").symlink_to("..", target_is_directory=True)
    (root / "Annotations" / "Spur" / "loop").symlink_to("..", target_is_directory=True)
    (root / "Annotations" / "Zloop").symlink_to(".", target_is_directory=True)  # not a class
    s = resolve(f"pku-pcb:{root}")
    assert s.counts() == before.counts() and s.classes == before.classes
    assert [r.source for r in s.train] == [r.source for r in before.train]
    why = dict(s.skipped)
    assert "symbolic link loop" in why[str(root / "images" / "Short" / "loop")]
    assert "symbolic link loop" in why[str(root / "Annotations" / "Spur" / "loop")]
