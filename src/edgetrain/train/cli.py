"""`edgetrain train`: one training run, with the paper's protocol as defaults."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edgetrain.errors import EdgeTrainError
from edgetrain.helpfmt import DefaultsHelp


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one model on one dataset and measure accuracy, memory and time",
        description="Train one model on one dataset in this process and write a run directory "
        "(config.json, checkpoint.pt every epoch, history.csv, rss.csv, record.json, plots). "
        "Defaults are the paper's protocol: Adam lr 1e-3, batch 16, 224 px, 60 epochs, "
        "dropout 0.2, last-epoch model.",
        formatter_class=DefaultsHelp,
    )
    p.add_argument(
        "--model",
        help="a name from `edgetrain models` (e.g. xception_lite), a spec id an architecture "
        "search found (e.g. xc-1fcb31d5c0) or a spec JSON file",
    )
    p.add_argument(
        "--data",
        help="dataset reference: synthetic-pcb[:per_class=N,size=PX,seed=S], caltech101:PATH, "
        "pku-pcb:PATH, folder:PATH (see `edgetrain data inspect --help`)",
    )
    p.add_argument(
        "--model-arg",
        action="append",
        metavar="FIELD=VALUE",
        help="override a field of the model's spec (JSON value), e.g. --model-arg middle_depth=4",
    )
    p.add_argument("--out", type=Path, help="run directory (default: runs/MODEL-TIME)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    p.add_argument("--config", type=Path, help="a JSON run config (flags given here override it)")
    g = p.add_argument_group("protocol")
    g.add_argument("--epochs", type=int, help="passes over the training split")
    g.add_argument("--resolution", type=int, help="input size in px")
    g.add_argument("--batch-size", type=int, help="effective batch per optimizer step")
    g.add_argument("--lr", type=float, help="learning rate (the peak, with a schedule)")
    g.add_argument("--optimizer", choices=["adam", "sgd"], help="the update rule")
    g.add_argument("--momentum", type=float, help="SGD momentum")
    g.add_argument("--weight-decay", type=float, help="L2 penalty added to the gradients")
    g.add_argument("--dropout", type=float, help="dropout before the head's linear layer")
    g.add_argument(
        "--bn-momentum",
        type=float,
        help="BatchNorm running-stats rate (default: the architecture's Keras value)",
    )
    g.add_argument("--seed", type=int, help="weights, data order, augmentation")
    g.add_argument("--split-seed", type=int, help="which images land in train/val/test")
    g.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        help="the paper's augmentation (default: on for Caltech, off for PCB)",
    )
    g.add_argument("--select", choices=["last", "best-val"], help="which epoch's model is tested")
    r = p.add_argument_group("short-run recipe (default: the paper's constant rate, none of these)")
    r.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine", "onecycle"],
        help="learning rate per step: constant (default), cosine (to 0 at the last step), "
        "onecycle (up from lr/25 over the warm-up, down to lr/2.5e5)",
    )
    r.add_argument(
        "--warmup-epochs",
        type=float,
        metavar="E",
        help="linear warm-up over E epochs (default 0; onecycle: its rise, 0 = 30%% of the run)",
    )
    r.add_argument(
        "--label-smoothing",
        type=float,
        metavar="S",
        help="share of each target spread over all classes in the training loss (default 0)",
    )
    r.add_argument(
        "--ema-decay",
        type=float,
        metavar="D",
        help="average the weights after every step with decay D (e.g. 0.998); the average is "
        "what is validated, tested and exported (default 0: off)",
    )
    v = p.add_argument_group("cross-validation")
    v.add_argument(
        "--folds",
        type=int,
        metavar="K",
        help="cut the data into K folds by group (boards) or by class (default 0: the data's "
        "own split); see `edgetrain data inspect REF --folds K`",
    )
    v.add_argument(
        "--fold",
        type=int,
        metavar="I",
        help="with --folds: fold I (0..K-1) is test, fold I+1 validation (default 0)",
    )
    m = p.add_argument_group("speed and memory")
    m.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    m.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        help="NHWC memory layout (on by default: faster on CPU, same results)",
    )
    m.add_argument(
        "--micro-batch",
        type=int,
        help="gradient accumulation over micro-batches (default: none, the whole batch)",
    )
    m.add_argument(
        "--checkpointing",
        action=argparse.BooleanOptionalAction,
        help="recompute each backbone block's activations in backward",
    )
    m.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="auto (default): bf16 where the CPU or GPU has it natively and a few timed steps "
        "of this model show it at least 1.1x faster, fp16 on a GPU without bf16, else fp32 "
        "(the record says which and why); bf16: autocast where native; fp16: autocast with "
        "gradient scaling, CUDA GPUs only (Jetson Xavier)",
    )
    m.add_argument(
        "--accelerator",
        metavar="DEVICE",
        help="auto (default: a CUDA GPU when PyTorch sees one, else the CPU), cpu, cuda, cuda:N",
    )
    m.add_argument(
        "--bn-recalibration-images",
        type=int,
        metavar="N",
        help="re-estimate BatchNorm statistics from N training images before every evaluation "
        "(default 1024; 0: evaluate with the running averages as trained, as the paper)",
    )
    m.add_argument(
        "--inplace-act",
        action=argparse.BooleanOptionalAction,
        help="in-place activations after BatchNorm (on by default)",
    )
    b = p.add_argument_group("memory budget")
    b.add_argument(
        "--memory-budget",
        metavar="SIZE",
        help="whole-process peak RSS to stay under, e.g. 1.5GB, 800MB (binary units: MB = MiB = "
        "2^20 bytes, GB = GiB = 2^30; a bare number is MB): the planner picks micro-batches / "
        "checkpointing to fit, and the run stops with a checkpoint if crossed",
    )
    b.add_argument(
        "--device",
        metavar="PROFILE",
        help="a device profile (threads and budget): a shipped name, e.g. raspberry-pi-4-4gb, or "
        "your own .toml; see `edgetrain train --list-devices`",
    )
    b.add_argument("--list-devices", action="store_true", help="list device profiles and exit")
    t = p.add_argument_group("transfer learning")
    t.add_argument("--init", help="start from the weights of this run directory or checkpoint")
    t.add_argument("--train-scope", help="all | head | last:N | bias")
    t.add_argument(
        "--stages",
        metavar="SCOPE:EPOCHS,...",
        help="train in stages, each from the one before, e.g. head:60,all:20 or `paper` (the "
        "paper's schedule); each stage runs in a fresh process with its own run directory",
    )
    p.add_argument("--latency-repeat", type=int, help="timed inference batches (>= 20 advised)")
    p.add_argument("--no-progress", action="store_true", help="log one line per epoch instead")
    p.add_argument("--json", action="store_true", help="print record.json at the end")
    p.set_defaults(func=run)


def _config_fields() -> list[str]:
    """RunConfig fields a flag of this command may set: every field whose name is a flag's
    destination (--batch-size -> batch_size); one list, read from RunConfig, not written again."""
    import dataclasses

    from edgetrain.train.config import RunConfig

    return [f.name for f in dataclasses.fields(RunConfig) if f.name not in _NOT_FLAGS]


# fields set otherwise: --model-arg (model_args), --memory-budget (memory_budget_mb), never (extra)
_NOT_FLAGS = {"model_args", "memory_budget_mb", "extra"}
MAX_CONFIG_BYTES = 1 << 20  # a run config is a few kB, a whole found spec in it included


def config_from_args(args: argparse.Namespace):
    from edgetrain.train.config import RunConfig

    base: dict = {}
    if args.config:
        from edgetrain.fileio import parse_json, read_text_bounded

        base = parse_json(
            read_text_bounded(args.config, MAX_CONFIG_BYTES, "run config"), str(args.config)
        )
        if not isinstance(base, dict):
            raise EdgeTrainError(f"{args.config} must hold a JSON object")
    for name in _config_fields():
        value = getattr(args, name, None)
        if value is not None:
            base[name] = value
    if args.model_arg:
        model_args = dict(base.get("model_args", {}))
        for item in args.model_arg:
            key, sep, raw = item.partition("=")
            if not sep or not key:
                raise EdgeTrainError(f"--model-arg takes FIELD=VALUE, got {item!r}")
            model_args[key] = _model_arg_value(key, raw)
        base["model_args"] = model_args
    if args.memory_budget:
        from edgetrain.measure.units import MB, parse_size

        base["memory_budget_mb"] = parse_size(args.memory_budget) / MB
    if not base.get("model"):
        raise EdgeTrainError("which model? give --model NAME (see `edgetrain models`)")
    if isinstance(base["model"], str) and isinstance(base.get("model_args", {}), dict):
        from edgetrain.models.found import resolve_model

        base["model"], base["model_args"] = resolve_model(base["model"], base.get("model_args", {}))
    if not base.get("data"):
        raise EdgeTrainError("which data? give --data REF, e.g. --data synthetic-pcb")
    return RunConfig.from_dict(base)


def _model_arg_value(key: str, raw: str) -> object:
    """A --model-arg value: JSON where it parses, else the text itself (a bare word). JSON beyond
    the parser's limits (an integer of thousands of digits, deep nesting) is refused."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw
    except (ValueError, RecursionError):
        raise EdgeTrainError(
            f"--model-arg {key}: the value is too large or nested too deeply"
        ) from None


def run(args: argparse.Namespace) -> int:
    from edgetrain.train.engine import train

    if args.list_devices:
        from edgetrain.measure import MB
        from edgetrain.train.devices import load_device, shipped_devices

        for name in shipped_devices():
            d = load_device(name)
            print(
                f"{name:<24} {d.threads} threads, budget {d.budget_bytes / MB:,.0f} MB "
                f"of {d.memory_bytes / MB:,.0f} MB  {d.description}"
            )
        return 0

    budget_mb = None
    if args.resume and not args.stages:
        if args.out is None:
            raise EdgeTrainError("--resume needs --out RUN_DIR (the run to continue)")
        given = [
            n
            for n in (*_config_fields(), "model_arg")
            if getattr(args, n, None) is not None and n != "accelerator"
        ]
        if given or args.config:
            raise EdgeTrainError(
                "--resume continues a run with its saved config (only --memory-budget and "
                "--accelerator may change); drop "
                + ", ".join("--" + n.replace("_", "-") for n in given or ["config"])
            )
        config = None
        if args.memory_budget:  # a run stopped by its budget continues under a new one
            from edgetrain.measure.units import MB, parse_size

            budget_mb = parse_size(args.memory_budget) / MB
    else:
        config = config_from_args(args)
    out = args.out or Path("runs") / f"{config.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.stages:
        return run_staged(config, args, out)
    log = print if args.no_progress else None
    record = train(
        config,
        out,
        resume=args.resume,
        progress=not args.no_progress,
        log=log,
        memory_budget_mb=budget_mb,
        accelerator=args.accelerator if args.resume else None,
    )
    if args.json:
        print(json.dumps(record.to_dict(), indent=2))
    else:
        from edgetrain.train.show import print_summary

        print_summary(record, out)
    return 0


def run_staged(config, args: argparse.Namespace, out: Path) -> int:
    from rich.console import Console
    from rich.table import Table

    from edgetrain.train.stages import parse_stages, run_stages, stage_rows

    if args.resume:
        raise EdgeTrainError("--stages resumes by itself: run the same command again")
    stages = parse_stages(args.stages)
    records = run_stages(config, stages, out, log=lambda msg: print(msg, file=sys.stderr))
    rows = stage_rows(records)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"{config.model} on {config.data}, in stages", title_justify="left")
    for col in (
        "stage",
        "scope",
        "epochs",
        "trainable params",
        "test acc",
        "peak RSS MB",
        "peak above baseline MB",
        "s / epoch",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["stage"]),
            r["train_scope"],
            str(r["epochs"]),
            f"{r['params_trainable']:,}",
            f"{r['test_accuracy']:.4f}",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['peak_above_baseline_mb']:.0f}",
            f"{r['epoch_s']:.1f}",
        )
    Console().print(table)
    print(f"run directories: {out}/stage*")
    return 0
