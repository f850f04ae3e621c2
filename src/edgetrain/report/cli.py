"""`edgetrain report`: the report of a bench folder, an Optuna study or a folder of runs.

A bench's results live in its Optuna study (`edgetrain.bench.study` writes them); this module
reads that study with Optuna itself rather than through `edgetrain.bench`, because bench imports
the report (to write one when a bench ends) and the report must not import bench back.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    src = Path(source)
    db = src / "study.db"
    storage = _open_storage(storage_url or f"sqlite:///{db.resolve()}")
    name = source if storage_url else _only_study(storage, db)
    study = _load_study(storage, name)
    out = out or (src / "report" if src.is_dir() else Path("report"))
    write_study_report(study, out, console, title=f"edgetrain report: {name}")
    return 0


def _report_of_runs(src: Path, out: Path | None, console: Console) -> int:
    from edgetrain.report.load import records_from_dir
    from edgetrain.report.render import write_report

    if not src.is_dir():
        raise EdgeTrainError(f"{src} is neither a bench folder nor a folder of runs")
    records, problems = records_from_dir(src)
    for p in problems:
        console.print(f"[yellow]skipped[/] {p}")
    if not records:
        raise EdgeTrainError(f"no record.json under {src}")
    paths = write_report(
        records,
        out or src / "report",
        title=f"edgetrain report: {src.name}",
        notes=[f"skipped: {p}" for p in problems],
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


def _open_storage(url: str) -> RDBStorage:
    from optuna.storages import RDBStorage

    # a bench may be writing the same SQLite file: wait for its locks instead of failing
    engine_kwargs: dict[str, Any] = (
        {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    )
    try:
        return RDBStorage(url, engine_kwargs=engine_kwargs)
    except Exception as exc:  # bad URL, server down, missing driver
        raise EdgeTrainError(f"cannot open study storage {_redact(url)}: {exc}") from None


def _redact(url: str) -> str:
    # never print a database password
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


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
