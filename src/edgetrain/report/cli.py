"""`edgetrain report`: the report of a bench folder, an Optuna study or a folder of runs.

A bench's results live in its Optuna study (`edgetrain.bench.study` writes them); this module
reads that study with Optuna itself (opened by `edgetrain.report.storage`) rather than through
`edgetrain.bench`, because bench imports the report (to write one when a bench ends) and the
report must not import bench back.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from edgetrain.errors import EdgeTrainError

if TYPE_CHECKING:
    import optuna
    from optuna.storages import RDBStorage
    from rich.console import Console


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "report",
        help="write the Markdown/HTML/PNG report of a study or a folder of runs",
        description="SOURCE is a bench output folder (with study.db), a folder of run "
        "directories (record.json files), or, with --storage, a study name.",
    )
    r.add_argument("source", help="bench folder, runs folder, or study name (with --storage)")
    r.add_argument("--storage", help="Optuna storage URL holding the study")
    r.add_argument("--out", type=Path, help="report folder (default: SOURCE/report)")
    r.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    src = Path(args.source)
    if args.storage or (src / "study.db").is_file():
        return _report_of_study(args.source, args.storage, args.out, console)
    return _report_of_runs(src, args.out, console)


def _report_of_study(
    source: str, storage_url: str | None, out: Path | None, console: Console
) -> int:
    # with --storage, SOURCE is the study's name; otherwise the bench folder holding study.db
    from edgetrain.report.storage import open_rdb

    src = Path(source)
    db = src / "study.db"
    # a report reads results: a URL that names no database is a typo, not a new study
    storage = open_rdb(storage_url or f"sqlite:///{db.resolve()}", must_exist=True)
    name = source if storage_url else _only_study(storage, db)
    study = _load_study(storage, name)
    out = out or (src / "report" if src.is_dir() else Path("report"))
    write_study_report(study, out, console, title=f"edgetrain report: {name}")
    return 0


def _report_of_runs(src: Path, out: Path | None, console: Console) -> int:
    from rich.markup import escape

    from edgetrain.report.load import records_from_dir
    from edgetrain.report.render import write_report

    if not src.is_dir():
        raise EdgeTrainError(f"{src} is neither a bench folder nor a folder of runs")
    records, problems = records_from_dir(src)
    for p in problems:
        # "skipped FILE: REASON"; a path may hold "[": no markup in it; one line each,
        # however long, for grep
        console.print(escape(p), style="yellow", highlight=False, soft_wrap=True)
    if not records:
        raise EdgeTrainError(f"no record.json under {src}")
    paths = write_report(
        records,
        out or src / "report",
        title=f"edgetrain report: {src.name}",
        notes=problems,
    )
    console.print(f"report: {paths.get('html')}")
    return 0


def write_study_report(study: optuna.Study, out: Path, console: Console, *, title: str) -> None:
    """Write the report of a bench study's finished cells to `out`; say so if there are none."""
    from edgetrain.report.load import records_from_study
    from edgetrain.report.render import write_report

    records = records_from_study(study)
    if not records:
        console.print("no finished cells yet: no report written")
        return
    paths = write_report(records, out, title=title)
    console.print(f"report: {paths.get('html', out)}")


# --- reading a study ------------------------------------------------------------------------


def _study_names(storage: RDBStorage) -> list[str]:
    import optuna

    return [s.study_name for s in optuna.get_all_study_summaries(storage)]


def _only_study(storage: RDBStorage, db: Path) -> str:
    names = _study_names(storage)
    if len(names) != 1:
        raise EdgeTrainError(f"{db} holds {len(names)} studies; use --storage")
    return names[0]


def _load_study(storage: RDBStorage, name: str) -> optuna.Study:
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = _study_names(storage)
        raise EdgeTrainError(
            f"no study {name!r} in this storage; studies there: {', '.join(names) or 'none'}"
        ) from None
