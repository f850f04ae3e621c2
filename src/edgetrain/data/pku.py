"""`pku-pcb:PATH` — PKU-Market-PCB boards with Pascal VOC boxes, one sample per annotated defect.

Layout: `PATH/images/<Class>/<board>.jpg` and `PATH/Annotations/<Class>/<board>.xml` (folder
names matched case-insensitively; a flat `images/` + `Annotations/` works too). Each `<object>`
becomes one sample: a square window centred on its box, `context` x the box's longer side but at
least `min_size` px, shifted to stay on the board (and shrunk only if the board is smaller). The
class is the object's `<name>` matched to the class folder names ignoring case, spaces and
dashes. Boards are split by template (`group`, by default the file name's two leading digits), so
near-identical boards never straddle train and test.

XML files are untrusted input: they are parsed by expat with a handler that refuses any DOCTYPE
or ENTITY declaration as expat meets it, i.e. after expat has decoded the file by its BOM or
declared encoding (UTF-16 included), so no entity is ever expanded and nothing external is read;
files over 1 MiB are refused too. Every problem is a (file, reason) skip: an
XML file that does not parse, whose image is missing or unreadable, whose box lies outside the
image or is empty, or names an unknown class; an image without an XML file.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple
from xml.parsers import expat

import numpy as np

from edgetrain.data.decode import ImageInfo, probe_files
from edgetrain.data.folder import check_folder, group_of
from edgetrain.data.refbase import DatasetRef, check_path, check_regex
from edgetrain.data.splits import Record, Splits, check_classes, finish, split_by_group
from edgetrain.data.walk import Walk
from edgetrain.errors import EdgeTrainError

_MAX_XML_BYTES = 1 << 20
_BOX_TOLERANCE_PX = 2  # VOC boxes are 1-based and often end one past the edge: clip up to this

BoxF = tuple[float, float, float, float]  # (xmin, ymin, xmax, ymax) as annotated
Skips = list[tuple[str, str]]  # (file, reason)


@dataclass(frozen=True)
class PKUPCB(DatasetRef):
    """PKU-Market-PCB boards with VOC boxes: one square crop with context per annotated defect."""

    path: Path
    context: float = 2.0  # window side = context x the box's longer side ...
    min_size: int = 128  # ... but at least this many pixels (then clipped to the board)
    group: str = r"^(\d\d)"  # board template: the two leading digits of the file name

    kind: ClassVar[str] = "pku-pcb"

    def __post_init__(self) -> None:
        check_path(self)
        if not self.context >= 1.0:
            raise EdgeTrainError(f"pku-pcb: context must be >= 1 (got {self.context})")
        if self.min_size < 1:
            raise EdgeTrainError(f"pku-pcb: min_size must be >= 1 (got {self.min_size})")
        check_regex(self.group, "pku-pcb")


class _BadXML(Exception):
    """An annotation file that cannot be used; `str(exc)` is the reason reported for it."""


class _Board(NamedTuple):
    """An annotation file, the board image it describes and its objects."""

    xml: Path
    image: Path
    objects: list[tuple[str, BoxF]]  # (name, box) in file order; k-th is `{xml}#object{k}`


def _norm(name: str) -> str:
    return re.sub(r"[\s\-_]+", "_", name.strip().lower())


def _child(root: Path, name: str) -> Path | None:
    """The subfolder of `root` called `name`, ignoring case."""
    for p in root.iterdir() if root.is_dir() else ():
        if p.is_dir() and p.name.lower() == name.lower():
            return p
    return None


def parse_voc(path: Path) -> tuple[str | None, list[tuple[str, BoxF]]]:
    """Parse a VOC annotation safely: (filename, [(object name, (xmin, ymin, xmax, ymax))]).

    Raises `_BadXML` with a reason for oversized files, DOCTYPE/ENTITY declarations, malformed
    XML and objects without a usable name or box.
    """
    with path.open("rb") as f:
        data = f.read(_MAX_XML_BYTES + 1)  # a huge file is not read whole
    if len(data) > _MAX_XML_BYTES:
        raise _BadXML(f"annotation file too large (> {_MAX_XML_BYTES:,} bytes)")
    root = _parse_xml(data)
    filename = (root.findtext("filename") or "").strip() or None
    objects = []
    for k, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        try:
            coords = tuple(
                float((box.findtext(t) or "").strip()) for t in ("xmin", "ymin", "xmax", "ymax")
            )  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            raise _BadXML(f"object {k} has no numeric bndbox xmin/ymin/xmax/ymax") from None
        if not name:
            raise _BadXML(f"object {k} has no <name>")
        if not all(math.isfinite(c) for c in coords):
            raise _BadXML(f"object {k} has a non-finite box coordinate")
        objects.append((name, coords))  # type: ignore[arg-type]
    return filename, objects


_NO_DECLARATIONS = "DOCTYPE/ENTITY declarations are not allowed in annotation files"


def _parse_xml(data: bytes) -> ET.Element:
    """The element tree of `data`, parsed by expat with every DTD refused, or `_BadXML`.

    One expat pass both builds the tree and refuses declarations, so the check sees exactly what
    is parsed, in whatever encoding expat decoded (BOM, declaration, UTF-16 without a BOM). A
    byte search for "<!DOCTYPE" would miss UTF-16. Expat reads no UTF-32: such files do not parse.
    """

    def refuse(*_: object) -> None:
        raise _BadXML(_NO_DECLARATIONS)

    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = refuse  # before any of the DTD is read
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
        return builder.close()
    except expat.ExpatError as exc:
        reason = (
            f"invalid XML ({expat.ErrorString(exc.code)}: line {exc.lineno}, column {exc.offset})"
        )
        if data[:4] in (b"\xff\xfe\0\0", b"\0\0\xfe\xff", b"<\0\0\0", b"\0\0\0<"):
            reason += "; UTF-32 is not supported, save the file as UTF-8"
        raise _BadXML(reason) from None
    except (ValueError, AssertionError, IndexError) as exc:  # e.g. no root element
        raise _BadXML(f"invalid XML ({exc or type(exc).__name__})") from None


def window(
    box: BoxF,
    width: int,
    height: int,
    *,
    context: float,
    min_size: int,
) -> tuple[int, int, int, int]:
    """A square (left, top, right, bottom) around `box`: context x its longer side, >= min_size,
    shifted to stay inside a width x height image (and shrunk only if the image is smaller)."""
    x0, y0, x1, y1 = box
    side = max(math.ceil(context * max(x1 - x0, y1 - y0)), min_size)
    side = min(side, width, height)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(np.clip(round(cx - side / 2), 0, width - side))
    top = int(np.clip(round(cy - side / 2), 0, height - side))
    return left, top, left + side, top + side


def _clip_box(box: BoxF, info: ImageInfo) -> BoxF | str:
    """The box clipped to the image, or a reason string if it is empty or lies outside."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return f"empty box ({x0:g}, {y0:g}, {x1:g}, {y1:g})"
    t = _BOX_TOLERANCE_PX
    if x0 < -t or y0 < -t or x1 > info.width + t or y1 > info.height + t:
        return (
            f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) lies outside the {info.width} x {info.height} "
            "image"
        )
    return max(x0, 0.0), max(y0, 0.0), min(x1, float(info.width)), min(y1, float(info.height))


def resolve_pku(ref: PKUPCB, *, seed: int) -> Splits:
    """Resolve a `pku-pcb:` reference: one context crop per annotated defect, split by board."""
    root = check_folder(ref.path, ref.kind)
    images_dir, ann_dir = _layout(root)
    # Two walks: images and annotations may share folders; each file counts once in its walk.
    images_walk, ann_walk = Walk(root), Walk(root)
    classes = _class_folders(ann_dir, ann_walk)
    image_files, skipped = images_walk.scan(images_dir)
    xml_files, skip = ann_walk.scan(
        ann_dir, keep=lambda p: p.suffix.lower() == ".xml", what="an annotation"
    )
    skipped += skip
    boards, skip = _read_boards(ann_dir, images_dir, image_files, xml_files)
    skipped += skip
    if not classes:  # flat layout: the classes are the annotated names
        classes = sorted({name for b in boards for name, _ in b.objects}, key=_norm)
    records, skip = _crop_records(ref, boards, classes)
    skipped += skip
    check_classes(ref, classes)
    if not records:
        raise EdgeTrainError(
            f"pku-pcb: no usable annotated defects under {root} ({len(skipped)} files skipped; "
            "run `edgetrain data inspect` on it to see why)"
        )
    parts, groups = split_by_group(records, classes, seed=seed)
    warnings = images_walk.warning() + ann_walk.warning()
    return finish(ref, classes, parts, seed=seed, skipped=skipped, groups=groups, warnings=warnings)


def _layout(root: Path) -> tuple[Path, Path]:
    """The `images/` and `Annotations/` folders under `root` (any case), or `EdgeTrainError`."""
    images_dir, ann_dir = _child(root, "images"), _child(root, "Annotations")
    if images_dir is None or ann_dir is None:
        raise EdgeTrainError(
            f"pku-pcb: {root} needs images/<Class>/*.jpg and Annotations/<Class>/*.xml "
            "(PKU-Market-PCB's layout); for class folders of crops use folder:PATH"
        )
    return images_dir, ann_dir


def _class_folders(ann_dir: Path, walk: Walk) -> list[str]:
    """Class names: the visible folders under `Annotations/` (none in the flat layout), less
    links back to a folder already claimed in `walk` (the loop is reported when it is walked)."""
    walk.claim_folder(ann_dir)
    return sorted(
        p.name
        for p in sorted(ann_dir.iterdir())
        if p.is_dir() and not p.name.startswith(".") and walk.claim_folder(p) is None
    )


class _ImageIndex:
    """The board images, found by relative path (no suffix), by stem or by file name."""

    def __init__(self, images_dir: Path, image_files: list[Path]) -> None:
        self.by_rel = {p.relative_to(images_dir).with_suffix(""): p for p in image_files}
        self.by_stem = {p.stem: p for p in image_files}
        self.by_name = {p.name: p for p in image_files}

    def find(self, rel: Path, stem: str, filename: str | None) -> Path | None:
        # Same relative path under images/, else same stem anywhere, else the XML's <filename>.
        return self.by_rel.get(rel) or self.by_stem.get(stem) or self.by_name.get(filename or "")


def _read_boards(
    ann_dir: Path, images_dir: Path, image_files: list[Path], xml_files: list[Path]
) -> tuple[list[_Board], Skips]:
    """Every annotation file of `xml_files` (under `ann_dir`) with its image and at least one
    object.

    The skips list the unusable annotation files in file order, then the images that no
    annotation file names.
    """
    index = _ImageIndex(images_dir, image_files)
    boards: list[_Board] = []
    skipped: Skips = []
    used_images: set[Path] = set()
    for xml in sorted(xml_files):
        try:
            board = _read_board(xml, ann_dir, index)
        except _BadXML as exc:
            skipped.append((str(xml), str(exc)))
            continue
        used_images.add(board.image)
        if board.objects:
            boards.append(board)
        else:
            skipped.append((str(xml), "no <object> annotated"))
    skipped += [
        (str(p), "no annotation file for this image") for p in image_files if p not in used_images
    ]
    return boards, skipped


def _read_board(xml: Path, ann_dir: Path, index: _ImageIndex) -> _Board:
    """Parse one annotation file and find its image; `_BadXML` with the reason if either fails."""
    if xml.suffix.lower() != ".xml":
        raise _BadXML(f"not an annotation file ({xml.suffix or 'no extension'})")
    try:
        filename, objects = parse_voc(xml)
    except OSError as exc:
        raise _BadXML(f"cannot read: {exc}") from None
    image = index.find(xml.relative_to(ann_dir).with_suffix(""), xml.stem, filename)
    if image is None:
        raise _BadXML(f"its image ({filename or xml.stem + '.*'}) is missing")
    return _Board(xml, image, objects)


def _crop_records(
    ref: PKUPCB, boards: list[_Board], classes: list[str]
) -> tuple[list[Record], Skips]:
    """Probe the boards (headers only) and turn each annotated object into a crop record."""
    class_index = {_norm(c): i for i, c in enumerate(classes)}
    infos, skipped = probe_files(sorted({b.image for b in boards}))
    pattern = re.compile(ref.group)
    records: list[Record] = []
    for b in boards:
        info = infos.get(b.image)
        if info is None:
            continue  # already reported as an unreadable image
        group = group_of(pattern, b.image.name)
        if group is None:
            reason = f"file name does not match the group pattern {ref.group!r}"
            skipped.append((str(b.image), reason))
            continue
        for k, (name, box) in enumerate(b.objects):
            label = class_index.get(_norm(name))
            if label is None:
                made: Record | str = f"class {name!r} is not one of {', '.join(classes)}"
            else:
                made = _crop_record(ref, b, k, box, info, group=group, label=label)
            if isinstance(made, str):
                skipped.append((f"{b.xml}#object{k}", made))
            else:
                records.append(made)
    return records, skipped


def _crop_record(
    ref: PKUPCB, board: _Board, k: int, box: BoxF, info: ImageInfo, *, group: str, label: int
) -> Record | str:
    """The record of object `k` on `board`: a window around its box; a reason if the box is bad."""
    clipped = _clip_box(box, info)
    if isinstance(clipped, str):
        return clipped
    win = window(clipped, info.width, info.height, context=ref.context, min_size=ref.min_size)
    return Record(
        source=f"{board.image}#{k} [{win[0]},{win[1]},{win[2]},{win[3]}]",
        label=label,
        path=str(board.image),
        crop=win,
        group=group,
        size=(win[2] - win[0], win[3] - win[1]),
        mode=info.mode,
    )
