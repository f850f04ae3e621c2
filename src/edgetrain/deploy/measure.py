"""Inference figures of a model in a fresh process: latency at batch 1 and 16, and peak RSS.

    python -m edgetrain.deploy.measure MODEL [--repeat 20] [--threads N]   # prints one JSON line

MODEL is an exported .onnx (onnxruntime, no torch in the process) or a run directory (PyTorch
eager). A fresh process makes the peak RSS the inference's own (the kernel's high-water mark,
VmHWM, which includes the runtime's import), not the exporting process's. Latency is the median
of `repeat` timed calls after 5 warm-up calls on a random batch.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgetrain.errors import EdgeTrainError

BATCH_SIZES = (1, 16)
WARMUP = 5


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def latency_ms(model: Any, batch_size: int, repeat: int) -> float:
    """Median wall time of `model.logits` on a random (B, 3, R, R) batch, ms."""
    r = model.resolution
    x = np.random.default_rng(0).standard_normal((batch_size, 3, r, r), dtype=np.float32)
    for _ in range(WARMUP):
        model.logits(x)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        model.logits(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def measure_here(path: str, *, repeat: int, threads: int | None) -> dict[str, Any]:
    """Load `path`, time it at batch 1 and 16, report peak RSS; in this process."""
    from edgetrain.deploy.predict import load_predictor

    t0 = time.perf_counter()
    model = load_predictor(path, threads=threads)
    out: dict[str, Any] = {"load_s": time.perf_counter() - t0}
    for b in BATCH_SIZES:
        out[f"latency_ms_b{b}"] = latency_ms(model, b, repeat)
    out["peak_rss_mb"] = peak_rss_mb()
    out["torch_loaded"] = "torch" in sys.modules
    return out


def measure_in_subprocess(
    path: str | Path, *, repeat: int = 20, threads: int | None = None, timeout_s: float = 900
) -> dict[str, Any]:
    """`measure_here` in a fresh Python process; its JSON result."""
    cmd = [sys.executable, "-m", "edgetrain.deploy.measure", str(path), "--repeat", str(repeat)]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise EdgeTrainError(f"measuring {path} failed: {tail[0][:300]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgetrain.deploy.measure")
    parser.add_argument("model")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        print(json.dumps(measure_here(args.model, repeat=args.repeat, threads=args.threads)))
    except EdgeTrainError as exc:
        print(f"edgetrain: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
