"""`edgetrain search`: find the architecture that trains best within a device's memory."""

from __future__ import annotations

import argparse
import re
import resource
import time
from pathlib import Path

from edgetrain.errors import EdgeTrainError
from edgetrain.helpfmt import DefaultsHelp
from edgetrain.objectives import OBJECTIVES

DEFAULT_BASELINES = (
    "xception", "xception_lite", "mobilenet_v2", "efficientnet_v2_b0", "efficientnet_v2_b1",
    "mobilevit_xxs",
)  # fmt: skip
MAX_TRIALS = 100_000


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="search an architecture space for the best accuracy that trains within a budget",
        description="Multi-objective architecture search (Optuna, NSGA-II by default): every "
        "proposed architecture is first predicted (memory, params, MACs) and trained only if it "
        "fits the budget, with the memory planner's fastest fitting plan; trials dominated early "
        "are stopped. Then the best candidates and the hand-made baselines are re-trained with "
        "several seeds and tested, and a report compares the fronts. Run the same command again "
        "to resume; `edgetrain worker --storage URL --study NAME` on other machines joins in.",
        formatter_class=DefaultsHelp,
    )
    p.add_argument("--data", help="dataset reference (needs a validation split); required")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--memory-budget", metavar="SIZE", help="whole-process peak, e.g. 1GiB")
    budget.add_argument("--device", metavar="PROFILE", help="a device profile's budget")
    p.add_argument("--space", default="xception-family", help="a shipped space or a TOML file")
    p.add_argument("--list-spaces", action="store_true", help="list the shipped spaces and exit")
    p.add_argument(
        "--trials",
        type=int,
        default=40,
        metavar="N",
        help="complete trials in the study, in all; a genome predicted infeasible and a repeat "
        "of a genome already tried count as trials too (neither trains), so N trials may train "
        "fewer than N architectures",
    )
    p.add_argument(
        "--time-budget",
        metavar="DURATION",
        help="stop starting trials after, e.g. 90m (workers that join keep to it too)",
    )
    p.add_argument(
        "--objectives",
        default="accuracy,memory",
        help=f"comma-separated, accuracy first, of {','.join(OBJECTIVES)} (on validation)",
    )
    p.add_argument("--sampler", default="nsga2", help="nsga2 | tpe | gp | random")
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    p.add_argument("--baselines", default=",".join(DEFAULT_BASELINES), help="hand-made models")
    p.add_argument("--top", type=int, default=3, help="candidates re-trained in the final round")
    p.add_argument(
        "--final-seeds", type=int, default=3, help="seeds per model, final round; 0: none"
    )
    p.add_argument(
        "--final-folds",
        type=int,
        default=0,
        metavar="K",
        help="cross-validate the final round over K folds by group (boards) or class, so that "
        "the report's paired verdicts rest on K x seeds pairs; 0: the data's own split",
    )
    p.add_argument("--stop-margin", type=float, default=0.02, help="early-stopping margin")
    p.add_argument("--stop-after", type=int, default=2, help="earliest epoch to stop a trial at")
    p.add_argument("--accelerator", metavar="DEVICE", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--out", type=Path, help="output folder; runs/search-SPACE when not given")
    p.add_argument("--storage", help="Optuna storage URL; a SQLite file in --out when not given")
    p.add_argument("--study", help="study name; search-SPACE when not given")
    p.add_argument(
        "--final-study",
        help="the final round's study; STUDY-final when not given. Searches of other spaces on "
        "the same storage, data, protocol and budget can share one, so the hand-made baselines "
        "train once and the report sets every search's candidates against them",
    )
    p.add_argument(
        "--set", action="append", metavar="run.KEY=VALUE",
        help="change the trials' protocol, e.g. --set run.epochs=8 --set run.resolution=96",
    )  # fmt: skip
    p.set_defaults(func=run)


def parse_duration(text: str) -> float:
    """'90m', '2h', '1h30m', '45s' or a bare number of seconds -> seconds."""
    m = re.fullmatch(
        r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text
    )
    if not text.strip() or not m or not any(m.groups()):
        raise EdgeTrainError(f"--time-budget: {text!r} is not a duration like 90m, 2h or 1h30m")
    h, mins, s = (float(g) if g else 0.0 for g in m.groups())
    seconds = h * 3600 + mins * 60 + s
    if not 0 < seconds <= 30 * 86400:
        raise EdgeTrainError(f"--time-budget must be more than 0 and at most 30 days, got {text}")
    return seconds


def request_from_args(args: argparse.Namespace):
    from edgetrain.bench.study import check_study_name
    from edgetrain.measure.units import MB, parse_size
    from edgetrain.models.registry import get_spec
    from edgetrain.report.storage import check_sqlite_url
    from edgetrain.search.run import SearchRequest, default_final_study
    from edgetrain.search.space import load_space
    from edgetrain.search.study import SAMPLERS, parse_objectives
    from edgetrain.train.devices import load_device

    if not args.data:
        raise EdgeTrainError("which data? give --data REF (with a validation split)")
    if not (args.memory_budget or args.device):
        raise EdgeTrainError("which budget? give --memory-budget SIZE or --device PROFILE")
    check_study_name(args.study)
    check_study_name(args.final_study, "--final-study")
    if args.storage:  # a typo in it stops the search before anything is probed or written
        check_sqlite_url(args.storage, must_exist=False)
    space = load_space(args.space)
    budget_mb = (
        parse_size(args.memory_budget) / MB
        if args.memory_budget
        else load_device(args.device).budget_bytes / MB
    )
    baselines = tuple(b.strip() for b in args.baselines.split(",") if b.strip())
    for b in baselines:
        get_spec(b)  # unknown -> its clear error
    _check_ranges(args)
    if args.sampler not in SAMPLERS:
        raise EdgeTrainError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {args.sampler}")
    out = (args.out or Path("runs") / f"search-{space.name}").resolve()
    return SearchRequest(
        space=space, data=args.data, budget_mb=budget_mb,
        objectives=parse_objectives(args.objectives), trials=args.trials,
        time_budget_s=parse_duration(args.time_budget) if args.time_budget else None,
        sampler=args.sampler, seed=args.seed, out=out, storage=args.storage,
        study_name=(study_name := _or_default(args.study, f"search-{space.name}")),
        final_study=_or_default(args.final_study, default_final_study(study_name)),
        run_overrides=_overrides(args),
        baselines=baselines, top=args.top, final_seeds=args.final_seeds,
        final_folds=args.final_folds,
        stop_margin=args.stop_margin, stop_min_epochs=args.stop_after,
    )  # fmt: skip


def _or_default(value: str | None, default: str) -> str:
    # an empty name is refused (check_study_name), not replaced by the default
    return default if value is None else value


def _overrides(args: argparse.Namespace) -> dict:
    from edgetrain.bench.experiments import parse_set_args

    overrides = parse_set_args(args.set)
    if args.accelerator:
        overrides["accelerator"] = args.accelerator
    return overrides


def _children_cpu_s() -> float:
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    return cpu.ru_utime + cpu.ru_stime


def _point(trial) -> str:
    r = trial.user_attrs["record"]
    return f"{trial.user_attrs['spec_id']} ({r['val_accuracy']:.3f}, {r['peak_above_baseline_mb']:.0f} MB)"


def _check_ranges(args: argparse.Namespace) -> None:
    checks = [
        ("--trials", args.trials, 1, MAX_TRIALS),
        ("--top", args.top, 1, 100),
        ("--final-seeds", args.final_seeds, 0, 100),
        ("--final-folds", args.final_folds, 0, 100),
        ("--stop-after", args.stop_after, 1, 100_000),
        ("--seed", args.seed, 0, 2**32 - 1),
    ]
    for flag, value, lo, hi in checks:
        if not lo <= value <= hi:
            raise EdgeTrainError(f"{flag} must be {lo}..{hi}, got {value}")
    if args.final_folds == 1:
        raise EdgeTrainError("--final-folds must be 0 (the data's own split) or 2..100, got 1")
    if not 0 <= args.stop_margin <= 1:
        raise EdgeTrainError(f"--stop-margin must be in [0, 1], got {args.stop_margin}")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from edgetrain.search.final import candidates, final_experiment, run_final
    from edgetrain.search.report import trial_counts, write_report
    from edgetrain.search.run import open_search_study, prepare_search, search_loop, set_deadline
    from edgetrain.search.space import shipped_spaces

    console = Console(stderr=False)
    if args.list_spaces:
        for name in shipped_spaces():
            console.print(name)
        return 0
    req = request_from_args(args)
    req.out.mkdir(parents=True, exist_ok=True)
    search = prepare_search(req, console.print)
    study = open_search_study(req, search)
    set_deadline(study, req.time_budget_s)
    t0 = time.monotonic()

    def on_trial(study, trial) -> None:
        c = trial_counts(study)
        console.print(
            f"[bold]{c['complete']}/{req.trials}[/] trials (repeats and infeasible genomes "
            f"count): {c['trained']} trained, {c['infeasible']} infeasible, "
            f"{c['repeats']} repeats, {c['stopped_early']} stopped early — "
            f"{(time.monotonic() - t0) / 60:.1f} min"
        )
        front = candidates(study, req.objectives, top=8)
        console.print("  validation front: " + ", ".join(_point(t) for t in front))

    search_loop(req, search, study, on_trial)
    final_records, final_study = None, None
    if req.final_seeds > 0:
        picks = candidates(study, req.objectives, req.top)
        if not picks:
            path = write_report(req.out, study, None, _children_cpu_s())
            raise EdgeTrainError(f"no trial trained: nothing to re-train (see {path})")
        exp = final_experiment(
            search, picks, req.baselines, req.final_seeds, req.final_study, req.final_folds
        )
        run_final(search, study, exp, console)
        from edgetrain.bench.study import open_study
        from edgetrain.report.load import records_from_study

        final_study = open_study(study._storage, req.final_study, create=False)
        final_records = records_from_study(final_study)
    path = write_report(req.out, study, final_records, _children_cpu_s(), final_study)
    console.print(f"report: {path}")
    return 0
