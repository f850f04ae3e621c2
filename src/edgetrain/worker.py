"""`edgetrain worker`: run the waiting cells of a shared bench study, or join a shared search,
from any machine that reaches the study's storage. It serves both, so it belongs to neither
package: it dispatches on the study (a search's study carries its `search` attribute)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgetrain.bench.cli import cell_args, command_parser, runner_on


def register(sub: argparse._SubParsersAction) -> None:
    w = command_parser(
        sub,
        "worker",
        "run cells of a shared bench study, or trials of a shared search",
        "Pop waiting cells of a study (enqueued by `edgetrain bench --storage URL`) and run "
        "them, each in a fresh process. Stays while other workers' cells run, so a cell whose "
        "worker died is retried here. On a study of `edgetrain search`, propose and train its "
        "trials until the search's trial count is reached (--data search=REF: this machine's "
        "path to the data).",
    )
    w.add_argument("--storage", required=True, help="Optuna storage URL, e.g. postgresql://...")
    w.add_argument("--study", required=True, help="the study's name")
    w.add_argument("--out", type=Path, default=Path("runs/worker"), help="run directories go here")
    cell_args(
        w,
        data_help="this machine's path for a dataset placeholder",
        flag="--no-wait",
        flag_help="stop when no cell is waiting, even if others are still running",
    )
    w.set_defaults(func=run_worker_cmd)


def run_worker_cmd(args: argparse.Namespace) -> int:
    from rich.console import Console

    from edgetrain.bench.experiments import parse_data_args
    from edgetrain.bench.study import check_study_name, open_storage, open_study, study_status
    from edgetrain.bench.work import work_cells

    console = Console()
    check_study_name(args.study)
    # a worker joins a study that exists: a URL naming no database is a typo
    storage = open_storage(
        args.storage, heartbeat_interval=args.heartbeat, grace_period=args.grace, must_exist=True
    )
    study = open_study(storage, args.study, create=False)
    if "search" in study.user_attrs:  # an architecture search: propose and train its trials
        from edgetrain.search.run import run_search_worker

        return run_search_worker(study, storage, args.out.resolve(), parse_data_args(args.data))
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    total = sum(study_status(study).get(k, 0) for k in ("complete", "waiting", "running"))
    counts = work_cells(
        study, storage, out, parse_data_args(args.data), console, total=total,
        wait=not args.no_wait, runner=runner_on(args.accelerator),
    )  # fmt: skip
    console.print(f"worker finished: {counts['done']} cells run, {counts['failed']} failed")
    return 0 if counts["failed"] == 0 else 1
