"""`edgetrain models`: the model zoo as a table."""

from __future__ import annotations

import argparse
import json
import sys

from edgetrain.errors import EdgeTrainError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the model zoo with parameters, MACs and activation sizes",
        description="Build every registered model and print its trainable parameters, BatchNorm "
        "statistics, forward MACs and activation elements at a resolution, and fp32 weight size.",
    )
    p.add_argument("--resolution", type=int, default=224, help="input size in px (default 224)")
    p.add_argument("--num-classes", type=int, default=101, help="head size (default 101)")
    p.add_argument("--pattern", default="*", help="only models matching this glob, e.g. 'xc*'")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument(
        "--memory-budget",
        metavar="SIZE",
        help="also predict each model's whole-process training peak with the memory planner's "
        "probe (a few seconds per model, in a fresh process) and say whether it fits SIZE "
        "(e.g. 1GiB)",
    )
    p.add_argument(
        "--batch-size", type=int, default=16, help="the batch a budget prediction plans for"
    )
    p.add_argument(
        "--data",
        metavar="REF",
        help="with --memory-budget: the head from this data's classes, and its decoded images "
        "counted in the baseline (without it, the data is left out)",
    )
    p.set_defaults(func=run)


def _fits(args: argparse.Namespace, names: list[str]) -> list[dict]:
    """The planner's prediction for every model under --memory-budget (search.feasibility)."""
    from rich.console import Console

    from edgetrain.measure import MB
    from edgetrain.measure.units import parse_size
    from edgetrain.search.feasibility import BaselineModel, data_bytes, predict
    from edgetrain.train.config import RunConfig

    budget_mb = parse_size(args.memory_budget) / MB
    data_mb, classes, ref = 0.0, args.num_classes, args.data or "synthetic-pcb"
    if args.data:
        from edgetrain.data import resolve

        splits = resolve(args.data)
        classes = len(splits.classes)
        data_mb = data_bytes(splits.counts(), args.resolution) / MB
    rows = []
    with Console(stderr=True).status("") as status:
        for name in names:
            status.update(f"probing {name} at {args.resolution} px, batch {args.batch_size}")
            config = RunConfig(model=name, data=ref, resolution=args.resolution,
                               batch_size=args.batch_size, memory_budget_mb=budget_mb)  # fmt: skip
            pred, _ = predict(config, classes, budget_mb, BaselineModel(data_mb=data_mb))
            rows.append({"predicted_peak_mb": pred.predicted_peak_mb, "plan": pred.plan,
                         "fits": pred.feasible, "budget_mb": budget_mb,
                         "data_mb": data_mb, "num_classes": classes})  # fmt: skip
    return rows


def run(args: argparse.Namespace) -> int:
    from edgetrain.models import list_models
    from edgetrain.models.profile import profile_model

    if args.resolution < 32 or args.resolution > 2048:
        raise EdgeTrainError(f"--resolution must be between 32 and 2048 px, got {args.resolution}")
    if args.num_classes < 1:
        raise EdgeTrainError(f"--num-classes must be >= 1, got {args.num_classes}")
    names = list_models(args.pattern)
    if not names:
        raise EdgeTrainError(
            f"no model matches {args.pattern!r}; known: {', '.join(list_models())}"
        )
    if not 1 <= args.batch_size <= 4096:
        raise EdgeTrainError(f"--batch-size must be 1..4096, got {args.batch_size}")
    if args.data and not args.memory_budget:
        raise EdgeTrainError("--data is for --memory-budget; add a budget or leave it out")
    fits = _fits(args, names) if args.memory_budget else [{} for _ in names]
    classes = fits[0].get("num_classes", args.num_classes)  # --data sets the head
    profiles = [profile_model(n, resolution=args.resolution, num_classes=classes) for n in names]
    if args.json:
        print(json.dumps([p.to_dict() | f for p, f in zip(profiles, fits, strict=True)], indent=2))
        return 0

    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"edgetrain models at {args.resolution} px, {classes}-class head",
        title_justify="left",
    )
    table.add_column("model", no_wrap=True)
    budget_cols = ("training peak MB", "plan", "fits") if args.memory_budget else ()
    for col in ("params", "BN stats", "GMACs", "act. M", "fp32 MB", *budget_cols):
        table.add_column(col, justify="right", no_wrap=True)
    for p, f in zip(profiles, fits, strict=True):
        extra = (
            (f"{f['predicted_peak_mb']:.0f}", f["plan"], "yes" if f["fits"] else "no") if f else ()
        )
        table.add_row(
            p.name,
            f"{p.params_trainable:,}",
            f"{p.bn_stats:,}",
            f"{p.macs / 1e9:.2f}",
            f"{p.activation_elements / 1e6:.1f}",
            f"{p.weights_mb:.1f}",
            *extra,
        )
    # a log or a pipe gets the whole table, not rich's 80 columns
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    if fits and fits[0]:
        f = fits[0]
        data = f"{f['data_mb']:.0f} MB of decoded data" if args.data else "no data (give --data)"
        console.print(
            f"training peak: the whole process at batch {args.batch_size} under the planner's "
            f"choice (plan), in fp32 (bf16 needs less): runtime, weights, {data}, gradients, "
            f"Adam state and what one step saves; fits: within {f['budget_mb']:.0f} MB."
        )
    console.print(
        "params: trainable; BN stats: BatchNorm running mean + var (Keras' non-trainable); "
        "GMACs and act. M (activation elements, millions): one forward pass at batch 1."
    )
    return 0
