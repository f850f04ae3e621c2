"""`edgetrain bench`; the report it writes is `edgetrain.report`'s. The cell options it shares
with `edgetrain worker` (`edgetrain.worker`) are defined here once."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from edgetrain.errors import EdgeTrainError
from edgetrain.helpfmt import DefaultsHelp


def register(sub: argparse._SubParsersAction) -> None:
    _register_bench(sub)


def _register_bench(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub,
        "bench",
        "run an experiment matrix (default: quick) and write the Pareto report",
        "Run every cell (model x dataset x init x seed) of an experiment, each in a fresh "
        "process, keeping results in an Optuna study. Run the same command again after a crash "
        "or Ctrl-C to resume: finished cells are not re-run. With --storage postgresql://..., "
        "`edgetrain worker` processes on other machines share the work.",
    )
    p.add_argument(
        "experiment",
        nargs="?",
        default="quick",
        help="a shipped experiment (see --list) or a path to your own .toml",
    )
    p.add_argument("--list", action="store_true", help="list the shipped experiments and exit")
    p.add_argument("--out", type=Path, help="output folder (default: runs/bench-EXPERIMENT)")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite in --out)")
    p.add_argument("--study", help="study name (default: the experiment's name)")
    p.add_argument("--seeds", type=int, help="run seeds 0..N-1 instead of the experiment's")
    p.add_argument(
        "--folds",
        type=int,
        metavar="K",
        help="cross-validate: every model and seed on K folds by group (boards) or by class; "
        "the report pairs models over the same folds and seeds (default: the experiment's, "
        "0 = the data's own split)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="run.KEY=VALUE",
        help="override a [run] option of the experiment, e.g. --set run.resolution=96 --set "
        "run.epochs=15 (a RunConfig field; TOML value). Overridden cells are new cells; the "
        "default --out and --study get a suffix naming the overrides",
    )
    cell_args(
        p,
        data_help="fill a dataset placeholder, e.g. --data caltech101=/data/101_ObjectCategories",
        flag="--enqueue-only",
        flag_help="only add the cells to the study (workers elsewhere run them)",
    )
    p.set_defaults(func=run_bench)


def command_parser(
    sub: argparse._SubParsersAction, name: str, summary: str, description: str
) -> argparse.ArgumentParser:
    # bench and worker show their defaults in --help: how long, how often, where
    return sub.add_parser(
        name,
        help=summary,
        description=description,
        formatter_class=DefaultsHelp,
    )


def cell_args(p: argparse.ArgumentParser, *, data_help: str, flag: str, flag_help: str) -> None:
    # both commands run cells here: this machine's data paths, their own switch, the device,
    # the heartbeats (in the order --help lists them)
    p.add_argument("--data", action="append", metavar="NAME=PATH", help=data_help)
    p.add_argument(flag, action="store_true", help=flag_help)
    p.add_argument(
        "--accelerator",
        metavar="DEVICE",
        help="train cells on auto | cpu | cuda | cuda:N (one worker per GPU: cuda:0, cuda:1, "
        "...); the device is recorded per cell",
    )
    _heartbeat_args(p)


def _heartbeat_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--heartbeat",
        type=int,
        default=10,
        metavar="S",
        help="seconds between a running cell's heartbeats",
    )
    p.add_argument(
        "--grace",
        type=int,
        default=30,
        metavar="S",
        help="a running cell without a heartbeat for this long is retried",
    )


# --- bench ------------------------------------------------------------------------------------


def run_bench(args: argparse.Namespace) -> int:
    from rich.console import Console

    from edgetrain.bench.experiments import (
        load_experiment,
        parse_data_args,
        parse_set_args,
        shipped_experiments,
    )
    from edgetrain.bench.study import (
        check_study_name,
        enqueue_cells,
        open_storage,
        open_study,
        study_status,
    )
    from edgetrain.bench.work import work_cells
    from edgetrain.report.cli import write_study_report
    from edgetrain.report.storage import check_sqlite_url

    console = Console()
    check_study_name(args.study)
    if args.list:
        for name in shipped_experiments():
            exp = load_experiment(name)
            console.print(f"[bold]{name}[/]: {exp.description} ({len(exp.cells())} cells)")
        return 0
    exp = load_experiment(args.experiment)
    if args.seeds is not None:
        exp = exp.with_seeds(args.seeds)
    if args.folds is not None:
        exp = exp.with_folds(args.folds)
    overrides = parse_set_args(args.set)
    if args.accelerator:
        overrides["accelerator"] = args.accelerator
    if overrides:
        exp = exp.with_run(overrides)
    name = exp.name + _overrides_suffix(overrides)
    if args.folds is not None and args.folds:
        name += f"-folds{args.folds}"
    data = parse_data_args(args.data)
    missing = sorted(exp.placeholders() - set(data))
    if missing:
        raise EdgeTrainError(
            f"experiment {exp.name!r} needs data paths: "
            + " ".join(f"--data {m}=PATH" for m in missing)
        )
    out = (args.out or Path("runs") / f"bench-{name}").resolve()
    if args.storage:  # a typo in it stops the bench before --out is made
        check_sqlite_url(args.storage, must_exist=False)
    out.mkdir(parents=True, exist_ok=True)
    storage_url = args.storage or f"sqlite:///{out / 'study.db'}"
    storage = open_storage(storage_url, heartbeat_interval=args.heartbeat, grace_period=args.grace)
    study = open_study(storage, name if args.study is None else args.study, create=True)
    study.set_user_attr("experiment", exp.name)
    study.set_user_attr("description", exp.description)
    known = dict(study.user_attrs.get("data", {}))
    study.set_user_attr("data", {**known, **data})

    cells = exp.cells()
    queued = enqueue_cells(study, cells)
    console.print(
        f"[bold]{exp.name}[/]: {len(cells)} cells, {len(queued.new)} newly queued, "
        f"{len(queued.already)} already done or queued — study {study.study_name!r} in "
        f"{storage_url if not args.storage else 'the given storage'}"
    )
    if args.enqueue_only:
        return 0
    t0 = time.perf_counter()
    counts = work_cells(study, storage, out, data, console, total=len(cells), wait=True)
    status = study_status(study)
    console.print(
        f"bench finished in {time.perf_counter() - t0:.0f} s: {counts['done']} cells run here, "
        f"{counts['failed']} failed; study: {status['complete']} complete, "
        f"{status['fail']} failed, {status['waiting']} waiting, {status['running']} running"
    )
    write_study_report(study, out / "report", console, title=f"edgetrain bench: {name}")
    return 0 if counts["failed"] == 0 else 1


def _overrides_suffix(overrides: dict) -> str:
    # "-epochs15-resolution96": scaled results get their own folder and study by default
    if not overrides:
        return ""
    import hashlib
    import json
    import re

    text = "-".join(f"{k}{json.dumps(v, sort_keys=True)}" for k, v in sorted(overrides.items()))
    text = re.sub(r"[^A-Za-z0-9_.-]+", "", text.replace(",", "-"))
    if len(text) > 40:
        blob = json.dumps(overrides, sort_keys=True).encode()
        text = "set" + hashlib.sha256(blob).hexdigest()[:8]
    return "-" + text


def runner_on(accelerator: str | None):
    """The cell runner of a worker bound to one device (`--accelerator cuda:1`), or None."""
    if not accelerator:
        return None
    from edgetrain.train.accelerator import resolve_accelerator
    from edgetrain.train.subprocess import run_in_subprocess

    resolve_accelerator(precision="fp32", channels_last=True, accelerator=accelerator)  # exists?

    def runner(config, out_dir, *, resume=False):
        return run_in_subprocess(config.replace(accelerator=accelerator), out_dir, resume=resume)

    return runner
