"""`pku-pcb:PATH` — PKU-Market-PCB boards with Pascal VOC boxes, one sample per annotated defect.

Layout: `PATH/images/<Class>/<board>.jpg` and `PATH/Annotations/<Class>/<board>.xml` (folder
names matched case-insensitively; a flat `images/` + `Annotations/` works too). Each `<object>`
becomes one sample: a square window centred on its box, `context` x the box's longer side but at
least `min_size` px, shifted to stay on the board (and shrunk only if the board is smaller). The
class is the object's `<name>` matched to the class folder names ignoring case, spaces and
dashes. Boards are split by template (`group`, by default the file name's two leading digits), so
near-identical boards never straddle train and test.

XML files are untrusted input: DOCTYPE and ENTITY declarations are refused (no entity expansion,
no external entities), and so are files over 1 MiB. Every problem is a (file, reason) skip: an
XML file that does not parse, whose image is missing or unreadable, whose box lies outside the
image or is empty, or names an unknown class; an image without an XML file.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from edgetrain.data.decode import ImageInfo, probe_files, scan_folder
from edgetrain.data.folder import check_folder, group_of
from edgetrain.data.refs import PKUPCB
from edgetrain.data.splits import Record, Splits, check_classes, finish, split_by_group
from edgetrain.errors import EdgeTrainError

_MAX_XML_BYTES = 1 << 20
_BOX_TOLERANCE_PX = 2  # VOC boxes are 1-based and often end one past the edge: clip up to this


class _BadXML(Exception):
    pass


def _norm(name: str) -> str:
    return re.sub(r"[\s\-_]+", "_", name.strip().lower())


def _child(root: Path, name: str) -> Path | None:
    """The subfolder of `root` called `name`, ignoring case."""
    for p in root.iterdir() if root.is_dir() else ():
        if p.is_dir() and p.name.lower() == name.lower():
            return p
    return None


def parse_voc(path: Path) -> tuple[str | None, list[tuple[str, tuple[float, float, float, float]]]]:
    """Parse a VOC annotation safely: (filename, [(object name, (xmin, ymin, xmax, ymax))]).

    Raises `_BadXML` with a reason for oversized files, DOCTYPE/ENTITY declarations, malformed
    XML and objects without a usable name or box.
    """
    data = path.read_bytes()
    if len(data) > _MAX_XML_BYTES:
        raise _BadXML(f"annotation file too large ({len(data):,} bytes > {_MAX_XML_BYTES:,})")
    if re.search(rb"<!\s*(DOCTYPE|ENTITY)", data, re.IGNORECASE):
        raise _BadXML("DOCTYPE/ENTITY declarations are not allowed in annotation files")
    try:
        root = ET.fromstring(data)  # safe: declarations refused above, expat has no XXE
    except ET.ParseError as exc:
        raise _BadXML(f"invalid XML ({exc})") from None
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


def window(
    box: tuple[float, float, float, float],
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


def _clip_box(
    box: tuple[float, float, float, float], info: ImageInfo
) -> tuple[float, float, float, float] | str:
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
    images_dir, ann_dir = _child(root, "images"), _child(root, "Annotations")
    if images_dir is None or ann_dir is None:
        raise EdgeTrainError(
            f"pku-pcb: {root} needs images/<Class>/*.jpg and Annotations/<Class>/*.xml "
            "(PKU-Market-PCB's layout); for class folders of crops use folder:PATH"
        )
    class_dirs = sorted(
        (p for p in ann_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    classes = [p.name for p in class_dirs]
    skipped: list[tuple[str, str]] = []
    xml_files = sorted(p for p in ann_dir.rglob("*") if p.is_file())
    image_files, skip = scan_folder(images_dir)
    skipped += skip
    by_rel = {p.relative_to(images_dir).with_suffix(""): p for p in image_files}
    by_stem = {p.stem: p for p in image_files}
    by_name = {p.name: p for p in image_files}

    # 1. Parse the annotations and find each one's image.
    parsed: list[tuple[Path, Path, list]] = []  # (xml, image, objects)
    used_images: set[Path] = set()
    for xml in xml_files:
        if xml.suffix.lower() != ".xml":
            skipped.append((str(xml), f"not an annotation file ({xml.suffix or 'no extension'})"))
            continue
        try:
            filename, objects = parse_voc(xml)
        except _BadXML as exc:
            skipped.append((str(xml), str(exc)))
            continue
        except OSError as exc:
            skipped.append((str(xml), f"cannot read: {exc}"))
            continue
        rel = xml.relative_to(ann_dir).with_suffix("")
        # Same relative path under images/, else same stem anywhere, else the XML's <filename>.
        image = by_rel.get(rel) or by_stem.get(xml.stem) or by_name.get(filename or "")
        if image is None:
            skipped.append((str(xml), f"its image ({filename or xml.stem + '.*'}) is missing"))
            continue
        if not objects:
            skipped.append((str(xml), "no <object> annotated"))
            used_images.add(image)
            continue
        parsed.append((xml, image, objects))
        used_images.add(image)
    for p in image_files:
        if p not in used_images:
            skipped.append((str(p), "no annotation file for this image"))
    if not classes:  # flat layout: the classes are the annotated names
        classes = sorted({name for _, _, objs in parsed for name, _ in objs}, key=_norm)
    class_index = {_norm(c): i for i, c in enumerate(classes)}

    # 2. Probe the boards (headers only) and turn each object into a crop record.
    infos, bad = probe_files(sorted({img for _, img, _ in parsed}))
    skipped += bad
    pattern = re.compile(ref.group)
    records: list[Record] = []
    for xml, image, objects in parsed:
        info = infos.get(image)
        if info is None:
            continue  # already reported as an unreadable image
        board = group_of(pattern, image.name)
        if board is None:
            skipped.append(
                (str(image), f"file name does not match the group pattern {ref.group!r}")
            )
            continue
        for k, (name, box) in enumerate(objects):
            label = class_index.get(_norm(name))
            where = f"{xml}#object{k}"
            if label is None:
                skipped.append((where, f"class {name!r} is not one of {', '.join(classes)}"))
                continue
            clipped = _clip_box(box, info)
            if isinstance(clipped, str):
                skipped.append((where, clipped))
                continue
            win = window(
                clipped, info.width, info.height, context=ref.context, min_size=ref.min_size
            )
            records.append(
                Record(
                    source=f"{image}#{k} [{win[0]},{win[1]},{win[2]},{win[3]}]",
                    label=label,
                    path=str(image),
                    crop=win,
                    group=board,
                    size=(win[2] - win[0], win[3] - win[1]),
                    mode=info.mode,
                )
            )
    check_classes(ref, classes)
    if not records:
        raise EdgeTrainError(
            f"pku-pcb: no usable annotated defects under {root} ({len(skipped)} files skipped; "
            "run `edgetrain data inspect` on it to see why)"
        )
    parts, groups = split_by_group(records, classes, seed=seed)
    return finish(ref, classes, parts, seed=seed, skipped=skipped, groups=groups)
