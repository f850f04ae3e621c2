"""`edgetrain export`, `edgetrain predict`, `edgetrain evaluate`.

Registering these imports nothing heavy: each command imports what it needs when it runs, and
`predict` with an .onnx model never imports torch.
"""

from __future__ import annotations

import argparse
import json
import sys

from edgetrain.errors import EdgeTrainError

MAX_BATCH = 4096


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a run to ONNX (+ sidecar JSON), check parity, optionally int8",
        description="Export a run's tested weights to ONNX with a dynamic batch and a JSON "
        "sidecar (classes, resolution, normalisation, checksums), check that onnxruntime "
        "reproduces PyTorch's logits on real images, measure latency and peak RSS in a fresh "
        "process and add the figures to the run's record.json.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--out", metavar="FILE", help="the .onnx to write (default RUN_DIR/model.onnx)")
    p.add_argument(
        "--int8",
        action="store_true",
        help="also write FILE.int8.onnx (static int8), kept only when its validation accuracy "
        "is within 1 point of fp32's",
    )
    p.add_argument(
        "--int8-anyway",
        action="store_true",
        help="keep the int8 model even when it loses more than 1 point",
    )
    p.add_argument(
        "--calibration",
        metavar="REF",
        help="int8 calibration data (its train split; default: the run's data)",
    )
    p.add_argument("--calibration-count", type=int, default=64, metavar="N")
    p.add_argument("--no-measure", action="store_true", help="skip latency and RSS measurement")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "predict",
        help="classify image files with a run directory or an exported .onnx",
        description="Top-k classes with probabilities for each image (folders are searched "
        "recursively). MODEL is a run directory (PyTorch) or an .onnx with its sidecar "
        "(onnxruntime only, no torch). Unreadable files are listed and counted; the exit "
        "status is 2 when a path given is neither a file nor a folder, or nothing could be "
        "predicted.",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("images", metavar="IMAGES_OR_FOLDERS", nargs="+")
    p.add_argument("--top-k", type=int, default=1, metavar="K")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", metavar="FILE", help="write one row per file to FILE")
    out.add_argument("--json", action="store_true", help="print predictions as JSON")
    p.add_argument("--batch-size", type=int, default=16, metavar="N")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="inference threads, 1..the CPUs this process may use (default: EDGETRAIN_THREADS, "
        "else the runtime's choice)",
    )
    p.set_defaults(func=_predict)

    p = sub.add_parser(
        "evaluate",
        help="accuracy, macro-F1, confusion matrix and misclassified images on a data set",
        description="Evaluate a run directory or an exported .onnx on a split of a data set; "
        "writes metrics.json, confusion.png and misclassified.png. Files the data set leaves "
        "out (empty, corrupt, not images) are counted and named.",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--data", metavar="REF", help="dataset reference (default: the model's own)")
    p.add_argument("--split", choices=["test", "val", "train", "all"], default="test")
    p.add_argument("--out", metavar="DIR", help="output folder (default: beside the model)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_evaluate)


def _export(args: argparse.Namespace) -> int:
    from edgetrain.deploy.export import export_run, format_lines

    if (args.calibration or args.int8_anyway) and not args.int8:
        raise EdgeTrainError("--calibration and --int8-anyway are for --int8; add --int8")
    if args.calibration_count < 1:
        raise EdgeTrainError("--calibration-count must be at least 1")
    summary = export_run(
        args.run_dir,
        out=args.out,
        int8=args.int8,
        int8_anyway=args.int8_anyway,
        calibration=args.calibration,
        calibration_count=args.calibration_count,
        measure=not args.no_measure,
    )
    print(json.dumps(summary, indent=2) if args.json else "\n".join(format_lines(summary)))
    if "int8_refused" in summary:
        raise EdgeTrainError(summary["int8_refused"])
    return 0


def _check_batch_size(batch_size: int) -> None:
    # the bound of training's batch; the memory a model may use is sized by it
    if not 1 <= batch_size <= MAX_BATCH:
        raise EdgeTrainError(f"--batch-size must be 1..{MAX_BATCH}, got {batch_size}")


def _predict(args: argparse.Namespace) -> int:
    from edgetrain.deploy.predict import (
        format_lines,
        input_problem,
        load_predictor,
        predict_files,
        write_csv,
    )

    if args.top_k < 1:
        raise EdgeTrainError("--top-k must be at least 1")
    _check_batch_size(args.batch_size)
    model = load_predictor(args.model, threads=args.threads, batch_size=args.batch_size)
    result = predict_files(model, args.images, top_k=args.top_k, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    elif args.csv:
        write_csv(result, args.csv)
        for file, reason in result.failed:
            print(f"unreadable: {file}: {reason}", file=sys.stderr)
        print(f"{len(result.predictions)} predicted, {len(result.failed)} unreadable -> {args.csv}")
    else:
        print("\n".join(format_lines(result)))
    problem = input_problem(result)
    if problem:  # after the output: what could be predicted is still shown
        raise EdgeTrainError(problem)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from edgetrain.deploy.evaluate import evaluate, format_lines

    _check_batch_size(args.batch_size)
    result = evaluate(
        args.model, data=args.data, split=args.split, out_dir=args.out, batch_size=args.batch_size
    )
    print(json.dumps(result, indent=2) if args.json else "\n".join(format_lines(result)))
    return 0
