"""Memory modes and the planner: whole-process peak RSS and images/s against plain training.

    python benchmarks/memory_modes.py [--model xception_lite] [--resolution 224] [--batch-size 16]
        [--budget 1GiB] [--per-class 24] [--epochs 2] [--modes plain,channels_last,...] [--json]

Every mode trains the same model on the same synthetic PCB images, each in a fresh process
(`edgetrain train`), so each peak belongs to its run. Reported per mode: peak RSS of the whole
process while training (20 Hz sampler and the kernel's high-water mark), peak above the baseline,
the median training throughput, and both as ratios to plain mode measured in this run. The
planner row also shows its predicted peak and the prediction error.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from edgetrain.train.rundir import RunDir

# plain = NCHW, fp32, whole batch, no checkpointing, in-place activations (each mode alone on top)
_PLAIN = ["--no-channels-last"]
MODES: dict[str, list[str]] = {
    "plain": _PLAIN,
    "channels_last": ["--channels-last"],
    "micro-batch 4": [*_PLAIN, "--micro-batch", "4"],
    "micro-batch 2": [*_PLAIN, "--micro-batch", "2"],
    "checkpointing": [*_PLAIN, "--checkpointing"],
    "bf16": [*_PLAIN, "--precision", "bf16"],
    "in-place off": [*_PLAIN, "--no-inplace-act"],
    "planner": [],  # edgetrain's defaults (channels_last) + --memory-budget, added below
}


def run_mode(name: str, extra: list[str], args: argparse.Namespace, out: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "edgetrain",
        "train",
        "--no-progress",
        "--json",
        "--model",
        args.model,
        "--data",
        f"synthetic-pcb:per_class={args.per_class}",
        "--resolution",
        str(args.resolution),
        "--batch-size",
        str(args.batch_size),
        "--epochs",
        str(args.epochs),
        "--latency-repeat",
        "3",
        "--out",
        str(out),
        *extra,
    ]
    if name == "planner":
        cmd += ["--memory-budget", args.budget]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"mode": name, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1]}
    record = RunDir(out).load_record()
    row = {
        "mode": name,
        "peak_rss_mb": record.peak_rss_mb,
        "peak_above_baseline_mb": record.peak_above_baseline_mb,
        "baseline_rss_mb": record.baseline_rss_mb,
        "train_images_per_s": record.train_images_per_s,
        "analytic_mb": record.analytic_mb,
    }
    if record.plan:
        chosen = record.plan["chosen"]
        row["plan"] = chosen
        row["predicted_peak_mb"] = chosen["predicted_peak_mb"]
        row["prediction_error"] = chosen["predicted_peak_mb"] / record.peak_rss_mb - 1
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="xception_lite")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--budget", default="1GiB")
    ap.add_argument("--per-class", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="edgetrain-modes-") as tmp:
        for i, name in enumerate(args.modes.split(",")):
            if name not in MODES:
                sys.exit(f"unknown mode {name!r}; known: {', '.join(MODES)}")
            rows.append(run_mode(name, MODES[name], args, Path(tmp) / f"run{i}"))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    plain = next((r for r in rows if r["mode"] == "plain" and "error" not in r), None)
    print(
        f"{args.model}, effective batch {args.batch_size}, {args.resolution} px, "
        f"{args.epochs} epochs of synthetic-pcb:per_class={args.per_class}; MB = 2^20 bytes"
    )
    print(
        f"{'mode':<16}{'peak RSS MB':>12}{'vs plain':>9}{'+baseline MB':>13}"
        f"{'img/s':>8}{'vs plain':>9}{'predicted MB':>13}{'pred. err':>10}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['mode']:<16} failed: {r['error']}")
            continue
        mem = r["peak_rss_mb"] / plain["peak_rss_mb"] if plain else float("nan")
        speed = r["train_images_per_s"] / plain["train_images_per_s"] if plain else float("nan")
        pred = (
            f"{r['predicted_peak_mb']:13.0f}{r['prediction_error']:>+10.1%}" if "plan" in r else ""
        )
        print(
            f"{r['mode']:<16}{r['peak_rss_mb']:12.0f}{mem:8.2f}x{r['peak_above_baseline_mb']:13.0f}"
            f"{r['train_images_per_s']:8.2f}{speed:8.2f}x{pred}"
        )
        if "plan" in r:
            p = r["plan"]
            setting = [f"micro-batch {p['micro_batch']}"]
            if p["checkpointing"]:
                setting.append("checkpointing")
            print(
                f"{'':<16}planner chose: {', '.join(setting)}, {p['precision']} "
                f"(budget {args.budget})"
            )


if __name__ == "__main__":
    main()
