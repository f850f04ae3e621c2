"""`edgetrain models`: the model zoo as a table."""

from __future__ import annotations

import argparse
import json

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
    p.set_defaults(func=run)


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
    profiles = [
        profile_model(n, resolution=args.resolution, num_classes=args.num_classes) for n in names
    ]
    if args.json:
        print(json.dumps([p.to_dict() for p in profiles], indent=2))
        return 0

    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"edgetrain models at {args.resolution} px, {args.num_classes}-class head",
        title_justify="left",
    )
    table.add_column("model", no_wrap=True)
    for col in ("params", "BN stats", "GMACs", "act. M", "fp32 MB"):
        table.add_column(col, justify="right", no_wrap=True)
    for p in profiles:
        table.add_row(
            p.name,
            f"{p.params_trainable:,}",
            f"{p.bn_stats:,}",
            f"{p.macs / 1e9:.2f}",
            f"{p.activation_elements / 1e6:.1f}",
            f"{p.weights_mb:.1f}",
        )
    Console().print(table)
    Console().print(
        "params: trainable; BN stats: BatchNorm running mean + var (Keras' non-trainable); "
        "GMACs and act. M (activation elements, millions): one forward pass at batch 1."
    )
    return 0
