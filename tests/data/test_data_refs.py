"""Reference strings and objects: parsing, canonical form, round trips, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgetrain.data import (
    PKUPCB,
    Caltech101,
    Folder,
    SyntheticPCB,
    default_augment,
    parse_ref,
)
from edgetrain.errors import EdgeTrainError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("caltech101:/data/caltech", Caltech101(Path("/data/caltech"))),
        ("caltech101:rel/dir?background=true", Caltech101(Path("rel/dir"), background=True)),
        ("pku-pcb:/d/pku", PKUPCB(Path("/d/pku"))),
        ("pku-pcb:/d/pku?context=3&min_size=96", PKUPCB(Path("/d/pku"), context=3.0, min_size=96)),
        ("folder:/d/crops", Folder(Path("/d/crops"))),
        (r"folder:/d/crops?group=^(\d+)_", Folder(Path("/d/crops"), group=r"^(\d+)_")),
        ("synthetic-pcb", SyntheticPCB()),
        ("synthetic-pcb:per_class=100,size=64", SyntheticPCB(per_class=100, size=64)),
        ("synthetic-pcb?per_class=7&seed=3", SyntheticPCB(per_class=7, seed=3)),
        ("SYNTHETIC-PCB:seed=2", SyntheticPCB(seed=2)),
    ],
)
def test_parse(text: str, expected) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize(
    "ref",
    [
        Caltech101(Path("/data/caltech")),
        Caltech101(Path("a b/c"), background=True),
        PKUPCB(Path("/d/pku"), context=2.5, min_size=64, group=r"^(\d{2})"),
        Folder(Path("/d/crops"), group=r"^(\d+)_(?:a|b)&x=%y?"),  # &, %, ?, | survive
        Folder(Path("/d/crops")),
        SyntheticPCB(),
        SyntheticPCB(per_class=12, size=32, seed=5),
    ],
)
def test_canonical_string_round_trips(ref) -> None:
    text = str(ref)
    assert text == ref.to_string()
    assert parse_ref(text) == ref
    assert str(parse_ref(text)) == text  # canonical form is a fixed point


def test_canonical_form_omits_defaults() -> None:
    assert str(SyntheticPCB()) == "synthetic-pcb"
    assert str(SyntheticPCB(size=64)) == "synthetic-pcb:size=64"
    assert str(Folder("/x")) == "folder:/x"
    assert str(PKUPCB("/x", context=3.0)) == "pku-pcb:/x?context=3.0"
    assert str(Folder("/x", group=r"^(\d+)_")) == r"folder:/x?group=^(\d+)_"


def test_str_paths_become_paths() -> None:
    assert Folder("/x").path == Path("/x")
    assert isinstance(Caltech101("rel").path, Path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty dataset reference"),
        ("imagenet:/x", "unknown dataset reference"),
        ("caltech101", "needs a path"),
        ("caltech101:", "needs a path"),
        ("folder:?group=x", "needs a path"),
        ("folder:/x?colour=red", "unknown option 'colour'"),
        ("folder:/x?group", "needs a value"),
        ("folder:/x?group=(unclosed", "not a valid regular expression"),
        ("pku-pcb:/x?context=wide", "not a valid float"),
        ("pku-pcb:/x?context=0.5", "context must be >= 1"),
        ("synthetic-pcb:per_class=lots", "not a valid int"),
        ("synthetic-pcb:per_class=1", "per_class must be >= 2"),
        ("synthetic-pcb:size=4", "size must be"),
        ("caltech101:/x?background=maybe", "not a valid bool"),
        ("synthetic-pcbx", "unknown dataset reference"),
        ("synthetic-pcb/x", "cannot parse"),
    ],
)
def test_bad_refs_raise_clear_errors(text: str, message: str) -> None:
    with pytest.raises(EdgeTrainError, match=message.replace("(", r"\(")):
        parse_ref(text)


def test_path_with_question_mark_cannot_be_a_string() -> None:
    with pytest.raises(EdgeTrainError, match="contains '\\?'"):
        str(Folder("/odd?dir"))


def test_default_augment_follows_the_paper() -> None:
    assert default_augment("caltech101:/x") is True
    assert default_augment(PKUPCB("/x")) is False
    assert default_augment("folder:/x") is False
    assert default_augment("synthetic-pcb") is False
