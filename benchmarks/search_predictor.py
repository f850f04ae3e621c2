"""The search's memory predictor against measured training peaks, on random genomes.

    python benchmarks/search_predictor.py [--space xception-family] [--genomes 20] [--seed 0]
        [--data REF] [--resolution 64] [--budget 1GiB] [--out DIR] [--json]

Each genome (seeded random draws from the space) is predicted the way `edgetrain search` does
(`search.feasibility.predict`: the planner's probe in a fresh process, the plan that fits the
budget, the baseline model learning its offset from the genomes measured before it), then
trained for one epoch with the same budget in a fresh process (`edgetrain train`, so the planner
makes the same choice). Measured: the run's whole-process peak RSS and its peak above baseline.
The table gives both, the relative error of the whole-process prediction, and the median and
maximum |error|. The first genome has no learned offset yet; its error shows the cold start.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

PKU = "folder:../shared/data/pku-market-pcb-crops?group=^(\\d+)_"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--space", default="xception-family")
    p.add_argument("--genomes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=PKU)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--budget", default="1GiB")
    p.add_argument("--out", type=Path)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    from edgetrain.data import resolve
    from edgetrain.measure.units import MB, parse_size
    from edgetrain.search.feasibility import BaselineModel, data_bytes, predict
    from edgetrain.search.run import PROTOCOL_DEFAULTS
    from edgetrain.search.space import load_space
    from edgetrain.train.config import RunConfig
    from edgetrain.train.subprocess import run_in_subprocess

    space, budget_mb = load_space(args.space), parse_size(args.budget) / MB
    splits = resolve(args.data)
    counts, classes = splits.counts(), len(splits.classes)
    baseline = BaselineModel(data_bytes(counts, args.resolution) / MB)
    out = args.out or Path(tempfile.mkdtemp(prefix="predictor-"))
    rng, rows = random.Random(args.seed), []
    for i in range(args.genomes):
        spec = space.spec_of(space.random_genome(rng))
        config = RunConfig.from_dict({
            **PROTOCOL_DEFAULTS, "model": spec.id, "model_args": spec.to_dict(family=True),
            "data": args.data, "resolution": args.resolution, "epochs": 1,
            "memory_budget_mb": budget_mb,
        })  # fmt: skip
        pred, model_rss_mb = predict(config, classes, budget_mb, baseline)
        row = {"genome": i, "spec_id": spec.id, "params": pred.params, "macs_m": pred.macs / 1e6,
               "plan": pred.plan, "feasible": pred.feasible,
               "predicted_peak_mb": pred.predicted_peak_mb,
               "predicted_above_mb": pred.predicted_above_baseline_mb}  # fmt: skip
        if pred.feasible:
            record = run_in_subprocess(config, out / spec.id)
            baseline.learn(model_rss_mb, record.baseline_rss_mb)
            row |= {"peak_rss_mb": record.peak_rss_mb, "above_mb": record.peak_above_baseline_mb,
                    "error": pred.predicted_peak_mb / record.peak_rss_mb - 1}  # fmt: skip
        rows.append(row)
        _print_row(row, header=i == 0)
    _summary(rows)
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


def _print_row(r: dict, header: bool) -> None:
    if header:
        print(f"{'#':>2} {'spec':<14} {'params':>10} {'MACs M':>7} {'pred MB':>8} {'meas MB':>8} "
              f"{'error':>7} {'pred/meas above baseline':>26}  plan")  # fmt: skip
    meas = f"{r['peak_rss_mb']:8.0f}" if "peak_rss_mb" in r else f"{'-':>8}"
    err = f"{r['error']:+7.1%}" if "error" in r else f"{'infeas.':>7}"
    above = f"{r['predicted_above_mb']:.0f} / {r.get('above_mb', float('nan')):.0f}"
    print(f"{r['genome']:>2} {r['spec_id']:<14} {r['params']:>10,} {r['macs_m']:>7.0f} "
          f"{r['predicted_peak_mb']:>8.0f} {meas} {err} {above:>26}  {r['plan']}", flush=True)  # fmt: skip


def _summary(rows: list[dict]) -> None:
    errs = [abs(r["error"]) for r in rows if "error" in r]
    warm = [abs(r["error"]) for r in rows[1:] if "error" in r]
    if not errs:
        print("no genome was feasible: nothing measured", file=sys.stderr)
        return
    print(f"\n{len(errs)} measured genomes: median |error| {statistics.median(errs):.1%}, "
          f"max {max(errs):.1%}; after the first (offset learned): median "
          f"{statistics.median(warm) if warm else float('nan'):.1%}, "
          f"max {max(warm) if warm else float('nan'):.1%}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
