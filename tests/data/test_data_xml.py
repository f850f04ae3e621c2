"""Issue 14, item 12: DOCTYPE and ENTITY declarations in VOC annotations are refused in every
encoding expat reads (a byte search for "<!DOCTYPE" missed UTF-16), no entity is ever expanded,
and annotations in those encodings without declarations still parse."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edgetrain.data import resolve
from edgetrain.data.pku import _BadXML, parse_voc

REFUSED = "DOCTYPE/ENTITY declarations are not allowed"
XML_DECL = '<?xml version="1.0" encoding="{enc}"?>\n'
# An internal entity that, expanded, would give a usable sample: the case that slipped through.
EXPANDS = (
    '<!DOCTYPE annotation [<!ENTITY cls "short">]>\n'
    "<annotation><filename>01_short_01.jpg</filename><object><name>&cls;</name>"
    "<bndbox><xmin>20</xmin><ymin>30</ymin><xmax>50</xmax><ymax>50</ymax></bndbox></object>"
    "</annotation>"
)
LAUGHS = (  # 10**9 "lol"s when expanded
    '<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{k} "{("&lol" + (str(k - 1) if k > 1 else "") + ";") * 10}">'
        for k in range(1, 10)
    )
    + "]>\n<annotation><object><name>&lol9;</name></object></annotation>"
)
EXTERNAL = '<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><annotation>&x;</annotation>'
PLAIN = (
    "<annotation><filename>01_short_01.jpg</filename><object><name>short</name>"
    "<bndbox><xmin>20</xmin><ymin>30</ymin><xmax>50</xmax><ymax>50</ymax></bndbox></object>"
    "</annotation>"
)

# (label, declared encoding, how the text becomes bytes)
ENCODINGS = [
    ("utf-8", "UTF-8", lambda t: t.encode("utf-8")),
    ("utf-8 BOM", "UTF-8", lambda t: t.encode("utf-8-sig")),
    ("utf-16-le BOM", "UTF-16", lambda t: b"\xff\xfe" + t.encode("utf-16-le")),
    ("utf-16-be BOM", "UTF-16", lambda t: b"\xfe\xff" + t.encode("utf-16-be")),
    ("utf-16-le", "UTF-16LE", lambda t: t.encode("utf-16-le")),
    ("utf-16-be", "UTF-16BE", lambda t: t.encode("utf-16-be")),
    ("utf-16-le no decl", None, lambda t: b"\xff\xfe" + t.encode("utf-16-le")),
    ("utf-32-le BOM", "UTF-32", lambda t: b"\xff\xfe\0\0" + t.encode("utf-32-le")),
    ("utf-32-be BOM", "UTF-32", lambda t: b"\0\0\xfe\xff" + t.encode("utf-32-be")),
    ("utf-32-le", "UTF-32LE", lambda t: t.encode("utf-32-le")),
    ("utf-32-be", "UTF-32BE", lambda t: t.encode("utf-32-be")),
    ("latin-1", "ISO-8859-1", lambda t: t.encode("latin-1")),
]
IDS = [e[0] for e in ENCODINGS]


def _doc(body: str, enc: str | None) -> str:
    return (XML_DECL.format(enc=enc) if enc else "") + body


@pytest.mark.parametrize(("label", "enc", "encode"), ENCODINGS, ids=IDS)
@pytest.mark.parametrize("body", [EXPANDS, LAUGHS, EXTERNAL], ids=["entity", "laughs", "external"])
def test_declarations_are_refused_in_every_encoding(tmp_path, label, enc, encode, body) -> None:
    path = tmp_path / "a.xml"
    path.write_bytes(encode(_doc(body, enc)))
    t0 = time.perf_counter()
    with pytest.raises(_BadXML) as exc:
        parse_voc(path)
    assert time.perf_counter() - t0 < 1.0  # refused, not expanded
    if label.startswith("utf-32"):  # expat reads no UTF-32: not even parsed
        assert "invalid XML" in str(exc.value) and "UTF-32" in str(exc.value)
    else:
        assert REFUSED in str(exc.value)


@pytest.mark.parametrize(("label", "enc", "encode"), ENCODINGS, ids=IDS)
def test_annotations_without_declarations_parse_in_encodings_expat_reads(
    tmp_path, label, enc, encode
) -> None:
    path = tmp_path / "a.xml"
    path.write_bytes(encode(_doc(PLAIN, enc)))
    if label.startswith("utf-32"):
        with pytest.raises(_BadXML, match="UTF-32 is not supported"):
            parse_voc(path)
    else:
        assert parse_voc(path) == ("01_short_01.jpg", [("short", (20.0, 30.0, 50.0, 50.0))])


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_entity_annotation_gives_no_sample(make_pku, codec) -> None:
    root = make_pku()
    xml = root / "Annotations" / "Short" / "01_short_01.xml"
    xml.write_bytes(_doc(EXPANDS, "UTF-16").encode(codec))  # BOM, none (LE), none (BE)
    s = resolve(f"pku-pcb:{root}")
    assert REFUSED in dict(s.skipped)[str(xml)]
    sources = [r.source for sp in ("train", "val", "test") for r in s.split(sp)]
    assert not any("01_short_01.jpg" in src for src in sources)


def test_the_size_limit_does_not_read_a_huge_file_whole(tmp_path) -> None:
    path = tmp_path / "big.xml"
    with path.open("wb") as f:
        f.truncate(64 << 20)  # sparse: 64 MiB of zeros
    with pytest.raises(_BadXML, match="too large"):
        parse_voc(Path(path))
