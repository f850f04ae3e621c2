"""Input-pipeline benchmark: decode once vs cached, and the loader vs a training step.

Measures, on Caltech-101 at 224 px (the paper's setting):

- the first (decoding) pass of `load_split` — Pillow decode + resize in threads, written to a
  fresh cache — and the cached pass that reads it back, in images/s;
- `BatchLoader` throughput at batch 16 with the paper's augmentation (and without), in images/s;
- xception_lite's training step (forward + backward + Adam, batch 16, 224 px, median after
  warm-up), in images/s, and the loader / step ratio (target >= 3: the loader adds < 1/3 of a
  step's time).

The image files are usually in the OS page cache, so the first pass measures decoding, not disk.

    .venv/bin/python benchmarks/data_pipeline.py [--limit N] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgetrain import create_model
from edgetrain.data import BatchLoader, load_split, resolve
from edgetrain.data.cache import (
    CACHE_FORMAT,
    _cache_path,
    _write_cache,
    cache_key,
    decode_records,
    decode_workers,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = (REPO / ".." / "shared" / "data" / "caltech-101").resolve()


def bench_decode(
    args: argparse.Namespace, cache_dir: Path
) -> tuple[dict, torch.Tensor, torch.Tensor]:
    splits = resolve(f"caltech101:{args.data}", seed=0)
    records = splits.train + splits.val + splits.test  # the whole set as one split
    if args.limit:
        rng = np.random.default_rng(0)
        records = [records[i] for i in sorted(rng.choice(len(records), args.limit, replace=False))]
    one = dataclasses.replace(splits, train=records, val=[], test=[])
    r = args.resolution
    # The first pass, step by step as load_split does it: key (stat every file), decode, write.
    t0 = time.perf_counter()
    key = cache_key(one, "train", records, r)
    images, labels, skipped = decode_records(records, r, progress=not args.json)
    t1 = time.perf_counter()
    blob = {"format": CACHE_FORMAT, "key": key, "images": images, "labels": labels}
    blob["skipped"] = [list(x) for x in skipped]
    _write_cache(_cache_path(cache_dir, one, "train", r, key), blob)
    t2 = time.perf_counter()
    # The cached pass goes through the public API, which must find the file just written.
    images2, _ = load_split(one, "train", resolution=r, cache_dir=cache_dir)
    cached_s = time.perf_counter() - t2
    assert torch.equal(images, images2)
    n, first_s = len(records), t2 - t0
    cache_mb = sum(p.stat().st_size for p in (cache_dir / "data").glob("*.pt")) / 2**20
    return (
        {
            "images": n,
            "decode_img_per_s": round(n / (t1 - t0), 1),
            "cache_write_s": round(t2 - t1, 2),
            "decode_first_pass_s": round(first_s, 2),
            "decode_first_pass_img_per_s": round(n / first_s, 1),
            "cached_pass_s": round(cached_s, 3),
            "cached_pass_img_per_s": round(n / cached_s, 1),
            "cache_file_mb": round(cache_mb, 1),
            "decode_workers": decode_workers(),
        },
        images,
        labels,
    )


def bench_loader(images: torch.Tensor, labels: torch.Tensor, args: argparse.Namespace) -> dict:
    out = {}
    for augment in (True, False):
        loader = BatchLoader(
            images, labels, batch_size=args.batch_size, shuffle=True, augment=augment, seed=0
        )
        seen, t0, epoch = 0, time.perf_counter(), 0
        while seen < args.loader_images:  # whole epochs until enough images went through
            for x, _ in loader.epoch(epoch):
                seen += x.shape[0]
                if seen >= args.loader_images:
                    break
            epoch += 1
        rate = seen / (time.perf_counter() - t0)
        key = "aug" if augment else "plain"
        out[f"loader_b{args.batch_size}_{key}_img_per_s"] = round(rate, 1)
    return out


def bench_step(args: argparse.Namespace, num_classes: int) -> dict:
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=num_classes)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch_size, 3, args.resolution, args.resolution)
    y = torch.randint(0, num_classes, (args.batch_size,))
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= args.warmup:  # warm-up steps include allocator and kernel selection
            times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    return {
        "model": args.model,
        "train_step_ms": round(step_s * 1000, 1),
        "train_step_img_per_s": round(args.batch_size / step_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Caltech-101 folder")
    p.add_argument("--limit", type=int, default=0, help="decode only N images (default: all 8,677)")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--model", default="xception_lite")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--loader-images", type=int, default=2000, help="images drawn from the loader")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--cache-dir", type=Path, default=None, help="default: a temporary folder")
    p.add_argument("--skip-step", action="store_true", help="do not time the training step")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        print(f"no Caltech-101 at {args.data}; pass --data", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = None
    cache_dir = args.cache_dir
    if cache_dir is None:
        tmp = tempfile.mkdtemp(prefix="edgetrain-bench-")
        cache_dir = Path(tmp)
    try:
        result = {"resolution": args.resolution, "batch_size": args.batch_size}
        result["torch_threads"] = torch.get_num_threads()
        result["cpus"] = len(os.sched_getaffinity(0))
        dec, images, labels = bench_decode(args, cache_dir)
        result.update(dec)
        result.update(bench_loader(images, labels, args))
        if not args.skip_step:
            result.update(bench_step(args, num_classes=101))
            aug = result[f"loader_b{args.batch_size}_aug_img_per_s"]
            result["loader_to_step_ratio"] = round(aug / result["train_step_img_per_s"], 1)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _table(result, args)
    return 0


def _table(r: dict, args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    b = args.batch_size
    t = Table(title=f"input pipeline, Caltech-101 at {r['resolution']} px ({r['images']:,} images)")
    t.add_column("stage")
    t.add_column("images/s", justify="right")
    t.add_column("notes")
    t.add_row(
        "first pass: decode + resize + cache",
        f"{r['decode_first_pass_img_per_s']:,.0f}",
        f"{r['decode_first_pass_s']:.1f} s in all, {r['decode_workers']} threads",
    )
    t.add_row(
        "  of which decode + resize",
        f"{r['decode_img_per_s']:,.0f}",
        f"then {r['cache_write_s']:.1f} s to write {r['cache_file_mb']:,.0f} MB (fsync)",
    )
    t.add_row(
        "cached pass: read back",
        f"{r['cached_pass_img_per_s']:,.0f}",
        f"{r['cached_pass_s']:.2f} s",
    )
    t.add_row(
        f"loader, batch {b}, augmented",
        f"{r[f'loader_b{b}_aug_img_per_s']:,.0f}",
        "paper's augmentation",
    )
    t.add_row(
        f"loader, batch {b}, plain", f"{r[f'loader_b{b}_plain_img_per_s']:,.0f}", "normalise only"
    )
    if "train_step_img_per_s" in r:
        t.add_row(
            f"{r['model']} training step, batch {b}",
            f"{r['train_step_img_per_s']:.2f}",
            f"median {r['train_step_ms']:,.0f} ms, {r['torch_threads']} threads",
        )
        t.add_row("loader (augmented) / step", f"{r['loader_to_step_ratio']:,.1f}x", "target >= 3x")
    Console().print(t)


if __name__ == "__main__":
    sys.exit(main())
