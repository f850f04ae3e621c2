"""Time one training step (forward + backward + Adam) per model, with and without channels_last.

    python benchmarks/model_step.py [--models xception,xception_lite] [--batch-size 16]
        [--resolution 224] [--warmup 2] [--repeat 5] [--threads N] [--json]

Prints a table of the median step time after warm-up and images/s, and the channels_last speed-up
measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

from edgetrain import create_model


def time_steps(
    name: str, *, batch_size: int, resolution: int, channels_last: bool, warmup: int, repeat: int
) -> list[float]:
    torch.manual_seed(0)
    model = create_model(name, num_classes=101).train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch_size, 3, resolution, resolution).to(memory_format=memory_format)
    y = torch.randint(0, 101, (batch_size,))
    times = []
    for i in range(warmup + repeat):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if i >= warmup:  # burn-in: the first steps include allocator and kernel warm-up
            times.append(dt)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="xception,xception_lite")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    for name in args.models.split(","):
        for cl in (False, True):
            ts = time_steps(
                name,
                batch_size=args.batch_size,
                resolution=args.resolution,
                channels_last=cl,
                warmup=args.warmup,
                repeat=args.repeat,
            )
            med = statistics.median(ts)
            rows.append(
                {
                    "model": name,
                    "channels_last": cl,
                    "train_step_ms": med * 1e3,
                    "train_step_ms_min": min(ts) * 1e3,
                    "train_samples_per_sec": args.batch_size / med,
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"train step (fwd+bwd+Adam), batch {args.batch_size}, {args.resolution} px, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"median of {args.repeat} after {args.warmup} warm-up"
    )
    print(f"{'model':<16}{'layout':<16}{'step ms':>10}{'img/s':>9}{'vs NCHW':>9}")
    base = {}
    for r in rows:
        key = r["model"]
        if not r["channels_last"]:
            base[key] = r["train_step_ms"]
        layout = "channels_last" if r["channels_last"] else "NCHW"
        speedup = base[key] / r["train_step_ms"]
        print(
            f"{r['model']:<16}{layout:<16}{r['train_step_ms']:>10.0f}"
            f"{r['train_samples_per_sec']:>9.2f}{speedup:>8.2f}x"
        )


if __name__ == "__main__":
    main()
