"""`edgetrain bench`, `edgetrain worker` and `edgetrain report`."""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from edgetrain.errors import EdgeTrainError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run an experiment matrix (default: quick) and write the Pareto report",
        description="Run every cell (model x dataset x init x seed) of an experiment, each in a "
        "fresh process, keeping results in an Optuna study. Run the same command again after a "
        "crash or Ctrl-C to resume: finished cells are not re-run. With --storage "
        "postgresql://..., `edgetrain worker` processes on other machines share the work.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
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
        "--data",
        action="append",
        metavar="NAME=PATH",
        help="fill a dataset placeholder, e.g. --data caltech101=/data/101_ObjectCategories",
    )
    p.add_argument(
        "--enqueue-only",
        action="store_true",
        help="only add the cells to the study (workers elsewhere run them)",
    )
    _heartbeat_args(p)
    p.set_defaults(func=run_bench)

    w = sub.add_parser(
        "worker",
        help="run cells of a shared study until its queue is empty",
        description="Pop waiting cells of a study (enqueued by `edgetrain bench --storage URL`) "
        "and run them, each in a fresh process. Stays while other workers' cells run, so a cell "
        "whose worker died is retried here.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    w.add_argument("--storage", required=True, help="Optuna storage URL, e.g. postgresql://...")
    w.add_argument("--study", required=True, help="the study's name")
    w.add_argument("--out", type=Path, default=Path("runs/worker"), help="run directories go here")
    w.add_argument(
        "--data",
        action="append",
        metavar="NAME=PATH",
        help="this machine's path for a dataset placeholder",
    )
    w.add_argument(
        "--no-wait",
        action="store_true",
        help="stop when no cell is waiting, even if others are still running",
    )
    _heartbeat_args(w)
    w.set_defaults(func=run_worker_cmd)

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

    from edgetrain.bench.experiments import load_experiment, parse_data_args, shipped_experiments
    from edgetrain.bench.study import enqueue_cells, open_storage, open_study, study_status

    console = Console()
    if args.list:
        for name in shipped_experiments():
            exp = load_experiment(name)
            console.print(f"[bold]{name}[/]: {exp.description} ({len(exp.cells())} cells)")
        return 0
    exp = load_experiment(args.experiment)
    if args.seeds is not None:
        exp = exp.with_seeds(args.seeds)
    data = parse_data_args(args.data)
    missing = sorted(exp.placeholders() - set(data))
    if missing:
        raise EdgeTrainError(
            f"experiment {exp.name!r} needs data paths: "
            + " ".join(f"--data {m}=PATH" for m in missing)
        )
    out = (args.out or Path("runs") / f"bench-{exp.name}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    storage_url = args.storage or f"sqlite:///{out / 'study.db'}"
    storage = open_storage(storage_url, heartbeat_interval=args.heartbeat, grace_period=args.grace)
    study = open_study(storage, args.study or exp.name, create=True)
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
    counts = _work(study, storage, out, data, console, total=len(cells), wait=True)
    status = study_status(study)
    console.print(
        f"bench finished in {time.perf_counter() - t0:.0f} s: {counts['done']} cells run here, "
        f"{counts['failed']} failed; study: {status['complete']} complete, "
        f"{status['fail']} failed, {status['waiting']} waiting, {status['running']} running"
    )
    _report_study(study, out / "report", console, title=f"edgetrain bench: {exp.name}")
    return 0 if counts["failed"] == 0 else 1


def _work(study, storage, out: Path, data, console, *, total: int, wait: bool) -> dict[str, int]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgetrain.bench.study import CellEvent, run_worker, study_status

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    done0 = study_status(study)["complete"]
    cells_task = progress.add_task("cells", total=total, completed=min(done0, total))
    current: dict = {}
    stop = threading.Event()

    def poll_epochs() -> None:
        # the child process writes history.csv after each epoch: show how far the cell is
        while not stop.wait(1.0):
            run_dir, task = current.get("run_dir"), current.get("task")
            if run_dir is None or task is None:
                continue
            hist = run_dir / "history.csv"
            if hist.exists():
                n = max(0, len(hist.read_text().splitlines()) - 1)
                progress.update(task, completed=n)

    def on_event(e: CellEvent) -> None:
        if e.kind == "start":
            epochs = _epochs_of(study, e.trial_number)
            current["run_dir"] = e.run_dir
            current["task"] = progress.add_task(f"  {e.label}", total=epochs)
        elif e.kind in ("done", "failed"):
            if current.get("task") is not None:
                progress.remove_task(current["task"])
            current.clear()
            if e.kind == "done":
                r = e.record
                progress.console.print(
                    f"[green]done[/] {e.label}: test acc {r['test_accuracy']:.3f}, peak "
                    f"+{r['peak_above_baseline_mb']:.0f} MB above baseline "
                    f"({r['peak_rss_mb']:.0f} MB RSS), {r['epoch_s']:.1f} s/epoch"
                )
                progress.advance(cells_task)
            else:
                progress.console.print(f"[red]failed[/] {e.label}: {e.error}")

    poller = threading.Thread(target=poll_epochs, daemon=True)
    poller.start()
    try:
        with progress:
            return run_worker(study, storage, out, data, wait_for_running=wait, on_event=on_event)
    finally:
        stop.set()


def _epochs_of(study, number: int) -> int | None:
    try:
        return int(study.trials[number].user_attrs["config"]["epochs"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


# --- worker ---------------------------------------------------------------------------------


def run_worker_cmd(args: argparse.Namespace) -> int:
    from rich.console import Console

    from edgetrain.bench.experiments import parse_data_args
    from edgetrain.bench.study import open_storage, open_study, study_status

    console = Console()
    storage = open_storage(args.storage, heartbeat_interval=args.heartbeat, grace_period=args.grace)
    study = open_study(storage, args.study, create=False)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    total = sum(study_status(study).get(k, 0) for k in ("complete", "waiting", "running"))
    counts = _work(
        study, storage, out, parse_data_args(args.data), console, total=total, wait=not args.no_wait
    )
    console.print(f"worker finished: {counts['done']} cells run, {counts['failed']} failed")
    return 0 if counts["failed"] == 0 else 1


# --- report ---------------------------------------------------------------------------------


def _report_study(study, out: Path, console, *, title: str) -> None:
    from edgetrain.bench.study import records_from_study
    from edgetrain.report import write_report

    records = records_from_study(study)
    if not records:
        console.print("no finished cells yet: no report written")
        return
    paths = write_report(records, out, title=title)
    console.print(f"report: {paths.get('html', out)}")


def run_report(args: argparse.Namespace) -> int:
    from rich.console import Console

    from edgetrain.report import records_from_dir, write_report

    console = Console()
    src = Path(args.source)
    if args.storage or (src / "study.db").is_file():
        from edgetrain.bench.study import open_storage, open_study

        url = args.storage or f"sqlite:///{(src / 'study.db').resolve()}"
        storage = open_storage(url)
        if args.storage:
            name = args.source
        else:
            import optuna

            names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
            if len(names) != 1:
                raise EdgeTrainError(
                    f"{src / 'study.db'} holds {len(names)} studies; use --storage"
                )
            name = names[0]
        study = open_study(storage, name, create=False)
        out = args.out or (src / "report" if src.is_dir() else Path("report"))
        _report_study(study, out, console, title=f"edgetrain report: {name}")
        return 0
    if not src.is_dir():
        raise EdgeTrainError(f"{src} is neither a bench folder nor a folder of runs")
    records, problems = records_from_dir(src)
    for p in problems:
        console.print(f"[yellow]skipped[/] {p}")
    if not records:
        raise EdgeTrainError(f"no record.json under {src}")
    paths = write_report(
        records,
        args.out or src / "report",
        title=f"edgetrain report: {src.name}",
        notes=[f"skipped: {p}" for p in problems],
    )
    console.print(f"report: {paths.get('html')}")
    return 0
