"""`edgetrain data inspect REF`: what a dataset reference resolves to, before training on it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgetrain.data.cache import load_split
from edgetrain.data.folds import describe_folds
from edgetrain.data.inspect import contact_sheet, summarize
from edgetrain.data.refs import resolve
from edgetrain.data.splits import SPLIT_NAMES, printable

_REF_HELP = """\
dataset reference, KIND[:PATH][?KEY=VALUE&...]:
  caltech101:PATH                  Caltech-101 (101_ObjectCategories), 80/10/10 per class;
                                   ?background=true keeps BACKGROUND_Google
  pku-pcb:PATH                     PKU-Market-PCB images/ + Annotations/ (VOC): one crop per
                                   defect, split by board template; ?context=2.0&min_size=128
                                   &group=^(\\d\\d)
  folder:PATH                      PATH/<class>/* (split 80/10/10 per class) or
                                   PATH/{train,val,test}/<class>/* (as given);
                                   ?group=REGEX keeps files of one group (first capture group
                                   of the file name) in one split, e.g. 'folder:crops?group=^(\\d+)_'
  synthetic-pcb                    procedural PCB-defect patches, 6 classes, no files;
                                   synthetic-pcb:per_class=100,size=64,seed=0
Quote references with ? & ( ) \\ for the shell; write & inside a value as %26."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `edgetrain data ...` to the top-level parser."""
    data = subparsers.add_parser(
        "data",
        help="inspect datasets: classes, splits, skipped files, contact sheets",
        description="Datasets: resolve a reference into train/val/test splits and look at them.",
    )
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True
    p = sub.add_parser(
        "inspect",
        help="classes, counts per split, skipped files with reasons, image sizes",
        description="Resolve a dataset reference and report classes, counts per split and "
        "class, groups per split, skipped files with reasons and image size statistics.",
        epilog=_REF_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_inspect_arguments(p)
    p.set_defaults(func=run_inspect)


def _add_inspect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", metavar="REF", help="dataset reference (see below)")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument(
        "--resolution",
        type=int,
        default=None,
        metavar="R",
        help="pixels per side: contact-sheet tiles (default 96) and, with --decode, the "
        "decoding resolution (default 224)",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=0,
        metavar="K",
        help="also show the K cross-validation folds (by group where the data has groups, else "
        "by class): fold I is test when training with --folds K --fold I (default 0: off)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--sheet", type=Path, metavar="PNG", help="write a contact sheet of samples")
    p.add_argument(
        "--per-class",
        type=int,
        default=8,
        metavar="N",
        help="samples per class on the sheet (default 8)",
    )
    p.add_argument(
        "--split",
        choices=SPLIT_NAMES,
        default="train",
        help="split shown on the sheet (default train)",
    )
    p.add_argument(
        "--decode",
        action="store_true",
        help="decode every image now (and cache it) to find files that fail to decode",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="decode cache (default $EDGETRAIN_CACHE or ~/.cache/edgetrain)",
    )
    p.add_argument(
        "--show-skipped",
        type=int,
        default=20,
        metavar="N",
        help="skipped files listed in the table view (default 20)",
    )


def run_inspect(args: argparse.Namespace) -> int:
    """Handler of `edgetrain data inspect`."""
    splits = resolve(args.ref, seed=args.seed)
    if args.decode:
        for s in SPLIT_NAMES:
            load_split(
                splits,
                s,
                resolution=args.resolution or 224,
                cache_dir=args.cache_dir,
                progress=not args.json,
            )
    sheet = None
    if args.sheet is not None:
        sheet = contact_sheet(
            splits,
            args.sheet,
            split=args.split,
            per_class=max(1, args.per_class),
            resolution=args.resolution or 96,
            seed=args.seed,
        )
    summary = summarize(splits)
    if args.folds:
        summary["folds"] = describe_folds(splits, folds=args.folds, seed=args.seed)
    if sheet is not None:
        summary["sheet"] = str(sheet)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary, args.show_skipped)
    return 0


def _printable(obj: Any) -> Any:
    """`obj` with every string (keys too) made printable: non-UTF-8 names would crash rich."""
    if isinstance(obj, str):
        return printable(obj)
    if isinstance(obj, dict):
        return {_printable(k): _printable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_printable(v) for v in obj]
    return obj


def _print_summary(s: dict, show_skipped: int) -> None:
    # Imported here: rich costs ~0.1 s to import and only the table view needs it.
    from rich.console import Console
    from rich.table import Table

    s = _printable(s)
    console = Console()
    console.print(
        f"[bold]{s['ref']}[/bold]  ({s['num_classes']} classes, seed {s['seed']}, "
        f"augmentation by default: {'on' if s['augment_default'] else 'off'})"
    )
    table = Table("class", *SPLIT_NAMES, "total", show_footer=True)
    for c, n in s["class_counts"].items():
        table.add_row(c, *(str(n[k]) for k in SPLIT_NAMES), str(sum(n.values())))
    totals = [s["splits"][k] for k in SPLIT_NAMES]
    for col, v in zip(table.columns[1:], [*totals, sum(totals)], strict=True):
        col.footer = f"{v:,}"
    table.columns[0].footer = "all"
    console.print(table)
    for split, groups in s["groups"].items():
        console.print(f"groups in {split} ({len(groups)}): {', '.join(groups) or '-'}")
    size = s["image_size"]
    if size:
        w, h = size["width"], size["height"]
        modes = ", ".join(f"{m} {n:,}" for m, n in size["modes"].items())
        console.print(
            f"size of {size['of']} (w x h): min {w['min']} x {h['min']}, median {w['median']:g} x "
            f"{h['median']:g}, max {w['max']} x {h['max']}; modes: {modes}"
        )
    if s.get("folds"):
        folds = Table(
            "fold", "images", *s["class_counts"], "groups", title="cross-validation folds"
        )
        for row in s["folds"]:
            counts = [str(n) for n in row["per_class"].values()]
            folds.add_row(
                str(row["fold"]), str(row["images"]), *counts, ", ".join(row["groups"]) or "-"
            )
        console.print(folds)
    skipped = s["skipped"]
    console.print(f"skipped: {len(skipped)} file(s)" + (":" if skipped else ""))
    for item in skipped[:show_skipped]:
        console.print(f"  {item['file']}: {item['reason']}", highlight=False, markup=False)
    if len(skipped) > show_skipped:
        console.print(f"  ... and {len(skipped) - show_skipped} more (--json lists all)")
    for w in s["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")
    if s.get("sheet"):
        console.print(f"contact sheet: {s['sheet']}")
