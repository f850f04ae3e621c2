"""Which cheap signal ranks a search space's genomes by their cross-validated accuracy?

    python benchmarks/signals.py [--spaces mobilenet-family,xception-family] [--genomes 20]
        [--folds 3] [--epochs 6] [--resolution 64] [--data REF] [--threads N]
        [--out runs/signals] [--report-only] [--json]

For each space, `--genomes` distinct random genomes (seeded, so a rerun picks the same ones)
are trained as ordinary bench cells, in two studies under --out/<space>:
- `trial`: on the data's own split (PKU crops: validation is one board template, test another),
  as a search trial trains today; it gives today's selection signal, validation accuracy;
- `cv`: on `--folds` grouped folds (test = fold i, validation = fold i+1, several boards each);
  the mean test accuracy over the folds is the target every signal is ranked against, and the
  fold-0 run stands for a trial trained on a multi-board validation split.
Both benches resume: run the same command again after an interruption.

The signals, from the cheapest up: parameters and MACs (lean genomes are not worse, a common
baseline), the zero-cost scores at initialisation (`edgetrain.search.signals`: grad-norm,
synflow, NASWOT on one batch of 32 training images), the sum of training losses after epoch
1, 2 and all (negated: a lower loss sum should rank higher), validation accuracy after epoch 1
and 2 and at the end, on one board and on several. For each: Spearman's rho against the
cross-validated test accuracy with n and a 95 % interval (Fisher z, se = 1.06 / sqrt(n - 3)).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

PKU = "folder:../shared/data/pku-market-pcb-crops?group=^(\\d+)_"
SPACES = ("mobilenet-family", "xception-family")
ZERO_COST_BATCH = 32


def sample_genomes(space_name: str, n: int, seed: int = 0) -> list[tuple[dict, Any]]:
    """`n` genomes of distinct specs, drawn with a seeded generator: [(genome, spec)]."""
    from edgetrain.search.space import load_space

    space, rng = load_space(space_name), random.Random(seed)
    out, seen = [], set()
    for _ in range(50 * n):
        genome = space.random_genome(rng)
        spec = space.spec_of(genome)
        if spec.id not in seen:
            seen.add(spec.id)
            out.append((genome, spec))
        if len(out) == n:
            break
    return out


def write_experiment(out: Path, name: str, models: list[str], args: argparse.Namespace) -> Path:
    run = {"resolution": args.resolution, "epochs": args.epochs, "latency_repeat": 2}
    if args.threads:
        run["threads"] = args.threads
    lines = [f'name = "{name}"', 'description = "benchmarks/signals.py"',
             f"models = {json.dumps(models)}", "seeds = [0]", "[datasets]",
             f"pku-crops = {json.dumps(args.data)}", "[run]"]  # fmt: skip
    lines += [f"{k} = {json.dumps(v)}" for k, v in run.items()]
    path = out / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_bench(toml: Path, out: Path, folds: int) -> None:
    cmd = [sys.executable, "-m", "edgetrain", "bench", str(toml), "--out", str(out)]
    cmd += ["--folds", str(folds)] if folds else []
    print(f"== {' '.join(cmd)}", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=False, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def zero_cost(specs: list[Any], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """spec id -> zero-cost scores on one fixed batch of training images (fold 0's train)."""
    import torch

    from edgetrain.data import load_split, resolve
    from edgetrain.models import build_model
    from edgetrain.preprocess import normalize
    from edgetrain.search.signals import zero_cost_signals

    splits = resolve(args.data, seed=0, folds=args.folds, fold=0)
    x, y = load_split(splits, "train", resolution=args.resolution)
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:ZERO_COST_BATCH]
    images = torch.from_numpy(normalize(x[idx].numpy()))
    scores = {}
    for spec in specs:
        torch.manual_seed(0)
        model = build_model(spec, num_classes=len(splits.classes))
        scores[spec.id] = zero_cost_signals(model, images, y[idx])
    return scores


def _records(folder: Path) -> list[dict]:
    from edgetrain.report.load import records_from_dir

    runs = folder / "runs"
    return records_from_dir(runs)[0] if runs.is_dir() else []


def per_genome(space_out: Path, specs: list[Any], zc: dict) -> list[dict[str, Any]]:
    """One row per genome with every signal and the cross-validated target (None if missing)."""
    trial = {r["model"]: r for r in _records(space_out / "trial")}
    cv: dict[str, list[dict]] = {}
    for r in _records(space_out / "cv"):
        cv.setdefault(r["model"], []).append(r)
    rows = []
    for spec in specs:
        t, folds = (
            trial.get(spec.id),
            sorted(cv.get(spec.id, []), key=lambda r: r["config"].get("fold", 0)),
        )
        row: dict[str, Any] = {"spec_id": spec.id, **zc.get(spec.id, {})}
        row["target_cv_test_acc"] = (
            statistics.fmean(r["test_accuracy"] for r in folds) if folds else None
        )
        row["cv_folds_done"] = len(folds)
        if t:
            row |= {"params": t["params_total"], "macs": t["macs"],
                    "val_acc_one_board": t["val_accuracy"]}  # fmt: skip
        if folds and folds[0]["config"].get("fold", 0) == 0:
            row |= _curve_signals(folds[0])
        rows.append(row)
    return rows


def _curve_signals(record: dict[str, Any]) -> dict[str, float]:
    hist = record.get("history") or []
    out = {"val_acc_several_boards": record["val_accuracy"]}
    for k in (1, 2):
        if len(hist) >= k:
            out[f"val_acc_epoch{k}"] = hist[k - 1]["val_accuracy"]
            out[f"neg_train_loss_sum_epoch{k}"] = -sum(h["train_loss"] for h in hist[:k])
    if hist:
        out["neg_train_loss_sum_all"] = -sum(h["train_loss"] for h in hist)
    return out


SIGNALS = ("params", "macs", "grad_norm", "synflow_log10", "naswot", "neg_train_loss_sum_epoch1",
           "neg_train_loss_sum_epoch2", "neg_train_loss_sum_all", "val_acc_epoch1",
           "val_acc_epoch2", "val_acc_one_board", "val_acc_several_boards")  # fmt: skip


def spearman(xs: list[float], ys: list[float]) -> dict[str, float]:
    """Spearman's rho with n and a 95 % interval (Fisher z, se 1.06 / sqrt(n - 3))."""
    from scipy.stats import spearmanr

    n = len(xs)
    if n < 4:
        return {"n": n, "rho": math.nan, "lo": math.nan, "hi": math.nan}
    rho = float(spearmanr(xs, ys).statistic)
    z, se = math.atanh(max(min(rho, 0.999999), -0.999999)), 1.06 / math.sqrt(n - 3)
    return {"n": n, "rho": rho, "lo": math.tanh(z - 1.96 * se), "hi": math.tanh(z + 1.96 * se)}


def correlations(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out = {}
    for name in SIGNALS:
        pairs = [(r[name], r["target_cv_test_acc"]) for r in rows
                 if r.get(name) is not None and r.get("target_cv_test_acc") is not None
                 and math.isfinite(r[name])]  # fmt: skip
        out[name] = spearman([p[0] for p in pairs], [p[1] for p in pairs])
    return out


def print_table(results: dict[str, dict[str, dict[str, float]]], args: argparse.Namespace) -> None:
    from edgetrain.measure.environment import describe_cpu

    print(f"CPU: {describe_cpu()}")
    print(f"data {args.data}, {args.resolution} px, {args.epochs} epochs, target: mean test "
          f"accuracy over {args.folds} grouped folds")  # fmt: skip
    spaces = list(results)
    print("| signal | " + " | ".join(f"{s}: rho [95 % CI] (n)" for s in spaces) + " |")
    print("|---|" + "---|" * len(spaces))
    for name in SIGNALS:
        cells = []
        for s in spaces:
            c = results[s][name]
            cells.append("–" if math.isnan(c["rho"]) else
                         f"{c['rho']:+.2f} [{c['lo']:+.2f}, {c['hi']:+.2f}] ({c['n']})")  # fmt: skip
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--spaces", default=",".join(SPACES))
    p.add_argument("--genomes", type=int, default=20)
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--data", default=PKU)
    p.add_argument("--threads", type=int, default=0, help="torch threads per run (0: default)")
    p.add_argument("--out", type=Path, default=Path("runs/signals"))
    p.add_argument("--report-only", action="store_true", help="table of what has finished")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if not 4 <= args.genomes <= 500 or not 2 <= args.folds <= 10:
        p.error("--genomes must be 4..500 and --folds 2..10")
    from edgetrain.models.found import save_spec

    results, rows_all = {}, {}
    for space in [s for s in args.spaces.split(",") if s]:
        out = args.out / space
        (out / "specs").mkdir(parents=True, exist_ok=True)
        specs = [spec for _, spec in sample_genomes(space, args.genomes)]
        models = [str(save_spec(spec, out / "specs")) for spec in specs]
        if not args.report_only:
            for name, folds in (("trial", 0), ("cv", args.folds)):
                (out / name).mkdir(exist_ok=True)
                run_bench(write_experiment(out / name, f"signals-{name}", models, args),
                          out / name, folds)  # fmt: skip
        rows = per_genome(out, specs, zero_cost(specs, args))
        rows_all[space], results[space] = rows, correlations(rows)
    if args.json:
        print(json.dumps({"rows": rows_all, "correlations": results}, indent=1))
    else:
        print_table(results, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
