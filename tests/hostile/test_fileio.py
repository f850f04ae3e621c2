"""The bounded reader every untrusted file goes through: regular files only, never more than
the cap, and the parsers' own limits turned into one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgetrain.errors import EdgeTrainError
from edgetrain.fileio import parse_json, parse_toml, read_bounded, read_text_bounded


def test_reads_a_regular_file_up_to_the_cap(tmp_path: Path) -> None:
    f = tmp_path / "a.json"
    f.write_bytes(b"x" * 100)
    assert read_bounded(f, 100, "spec") == b"x" * 100
    with pytest.raises(EdgeTrainError, match="larger than 99 bytes"):
        read_bounded(f, 99, "spec")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_refuses_devices_and_links_to_them(tmp_path: Path) -> None:
    link = tmp_path / "spec.json"
    link.symlink_to("/dev/zero")
    for p in (Path("/dev/zero"), link):
        with pytest.raises(EdgeTrainError, match="not a regular file"):
            read_bounded(p, 1 << 20, "model spec")


def test_refuses_a_fifo_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "space.toml"
    os.mkfifo(fifo)
    with pytest.raises(EdgeTrainError, match="not a regular file"):
        read_bounded(fifo, 1 << 20, "search space")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_a_proc_file_of_size_zero_is_still_capped() -> None:
    assert Path("/proc/self/status").stat().st_size == 0
    with pytest.raises(EdgeTrainError, match="larger than 10 bytes"):
        read_bounded(Path("/proc/self/status"), 10, "record")


def test_missing_and_undecodable_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(EdgeTrainError, match="No such file"):
        read_bounded(tmp_path / "nope", 10, "spec")
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(EdgeTrainError, match="not UTF-8"):
        read_text_bounded(bad, 10, "spec")


@pytest.mark.parametrize(
    "text", ["1" * 5000, "[" * 100_000 + "]" * 100_000, "{", '{"a": }'], ids=str.__len__
)
def test_json_limits_are_one_line(text: str) -> None:
    with pytest.raises(EdgeTrainError, match="not valid JSON"):
        parse_json(text, "x.json")


@pytest.mark.parametrize("text", ["a = " + "1" * 5000, "a = " + "[" * 100_000, "a = = 1"])
def test_toml_limits_are_one_line(text: str) -> None:
    with pytest.raises(EdgeTrainError, match="not valid TOML"):
        parse_toml(text, "x.toml")
