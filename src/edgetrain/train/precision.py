"""`precision = "auto"`: bf16 where it pays on this machine and for this model, by measurement.

Why measure: bf16 autocast roughly halves training memory and speeds up convolution-heavy
models by 1.6-1.8x on a CPU with native bf16 (AVX512-BF16, AMX), but depthwise-bound models
such as MobileNetV2 gain nothing or lose, and on a CPU without native bf16 PyTorch runs bf16
through reference loops (~100x slower). `torch.ops.mkldnn._is_mkldnn_bf16_supported()` says
True on AVX-512 CPUs without native bf16, so a flag alone does not decide.

The rule:
- a CUDA GPU: bf16 where it has bf16 (Ampere on), else fp16 with gradient scaling;
- a CPU without the avx512_bf16 / amx_bf16 flags: fp32;
- a CPU with them: a few training steps of the run's own model at its batch and resolution in
  fp32 and in bf16, after a warm-up; bf16 when its median step is at least `MIN_SPEEDUP` times
  faster, else fp32. The verdict is cached per (CPU, torch, model spec, resolution, batch,
  channels_last), so the seeds and folds of a bench time it once. The steps run in a fresh
  process, so what they touch never counts in the run's own memory peak.

What was chosen and why goes into the record (`precision`, `precision_reason`); the run's
config holds the resolved precision, so its id does too.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from edgetrain.errors import EdgeTrainError
from edgetrain.fileio import atomic_write_text
from edgetrain.train.accelerator import accelerator_class, autocast_context, parse_accelerator
from edgetrain.train.config import RunConfig

MIN_SPEEDUP = 1.1  # bf16 must be this much faster than fp32 to be chosen (timing noise)
_WARMUP, _TIMED = 2, 3  # steps per precision
_CACHE_VERSION = 1


def resolve_precision(config: RunConfig, num_classes: int) -> tuple[RunConfig, str]:
    """`config` with precision "auto" replaced by what this machine should use, and the reason
    (one sentence); a config that names a precision comes back unchanged, "asked for"."""
    if config.precision != "auto":
        return config, f"{config.precision} as asked"
    kind, index = parse_accelerator(config.accelerator)
    fixed = accelerator_class(kind).auto_precision(index)
    if fixed is not None:
        return config.replace(precision=fixed[0]), fixed[1]
    fp32_ms, bf16_ms = _timed_steps(config, num_classes)
    speedup = fp32_ms / bf16_ms if bf16_ms > 0 else 0.0
    chosen = "bf16" if speedup >= MIN_SPEEDUP else "fp32"
    why = (
        f"auto: a training step took {bf16_ms:.0f} ms in bf16 and {fp32_ms:.0f} ms in fp32 "
        f"({speedup:.2f}x); bf16 is chosen from {MIN_SPEEDUP}x"
    )
    return config.replace(precision=chosen), why


def _timed_steps(config: RunConfig, num_classes: int) -> tuple[float, float]:
    """Median training-step ms of the run's model in fp32 and bf16 (cached, see the module)."""
    key = _cache_key(config)
    cache = _load_cache()
    if key in cache:
        hit = cache[key]
        return float(hit["fp32_ms"]), float(hit["bf16_ms"])
    fp32_ms, bf16_ms = _measure_in_child(config, num_classes)
    cache[key] = {"fp32_ms": fp32_ms, "bf16_ms": bf16_ms}
    _save_cache(cache)
    return fp32_ms, bf16_ms


def _measure_in_child(config: RunConfig, num_classes: int) -> tuple[float, float]:
    """`measure_steps` in a fresh Python process: the model, batch and autograd buffers the
    timing touches (44 MB for xception_lite at 64 px, batch 16) would otherwise stay in the
    training process and raise its peak, the figure edgetrain reports."""
    request = json.dumps({"config": config.to_dict(), "num_classes": num_classes})
    proc = subprocess.run(
        [sys.executable, "-m", "edgetrain.train.precision", request],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        return float(out["fp32_ms"]), float(out["bf16_ms"])
    except (IndexError, KeyError, TypeError, ValueError):
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        msg = f"timing bf16 against fp32 failed (exit {proc.returncode}): {tail}"
        raise EdgeTrainError(msg) from None


def measure_steps(config: RunConfig, num_classes: int) -> tuple[float, float]:
    """Median ms of a training step of the run's model in fp32 and in bf16, in this process."""
    from edgetrain.train.setup import build_model

    built = build_model(config.replace(precision="fp32"), num_classes)
    model = built.model
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    batch = timing_batch(config)
    x = torch.randn(batch, 3, config.resolution, config.resolution).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch,))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        times = {p: _step_ms(model, opt, x, y, p) for p in ("fp32", "bf16")}
    finally:
        torch.set_num_threads(threads)
    return times["fp32"], times["bf16"]


def timing_batch(config: RunConfig) -> int:
    """The batch the steps are timed at: the run's (micro-)batch, or, under a memory budget, at
    most what the spec's meta-device estimate says the budget holds beside the weights, their
    gradients and optimizer state (the planner may split the batch later; the timing must not
    hold more than the training will)."""
    from edgetrain.models.estimate import model_size, saved_for_backward
    from edgetrain.models.found import run_spec
    from edgetrain.models.registry import meta_model

    batch = config.micro_batch or config.batch_size
    spec = run_spec(config.model, config.model_args) if config.memory_budget_mb else None
    if spec is None:
        return batch
    model = meta_model(spec, num_classes=1)
    per_image = max(saved_for_backward(model, config.resolution).total_bytes, 1)
    room = config.memory_budget_mb * 2**20 - 4 * model_size(model).weights_bytes
    # at least 2 images: BatchNorm cannot train on one whose feature map ends at 1x1
    return max(min(2, batch), min(batch, int(room // per_image)))


def _step_ms(model, opt, x, y, precision: str) -> float:
    out = []
    for i in range(_WARMUP + _TIMED):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast_context(precision, "cpu"):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
        opt.step()
        if i >= _WARMUP:
            out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def _cache_key(config: RunConfig) -> str:
    from edgetrain.measure.environment import describe_cpu

    what = {
        "v": _CACHE_VERSION,
        "cpu": describe_cpu(),
        "torch": torch.__version__,
        "model": config.model,
        "model_args": config.model_args,
        "resolution": config.resolution,
        "batch": timing_batch(config),
        "channels_last": config.channels_last,
        "checkpointing": config.checkpointing,
        "threads": config.threads or torch.get_num_threads(),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def _cache_file() -> Path:
    root = os.environ.get("EDGETRAIN_CACHE")
    base = Path(root).expanduser() if root else Path("~/.cache/edgetrain").expanduser()
    return base / "precision.json"


def _load_cache() -> dict[str, Any]:
    path = _cache_file()
    try:
        if not path.is_file() or path.stat().st_size > 1 << 20:
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}  # a broken cache is re-measured, never trusted
    ok = isinstance(data, dict) and all(
        isinstance(v, dict) and {"fp32_ms", "bf16_ms"} <= set(v) for v in data.values()
    )
    return data if ok else {}


def _save_cache(cache: dict[str, Any]) -> None:
    try:
        path = _cache_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(cache, indent=1))
    except OSError:  # a read-only home: the next run measures again
        pass


if __name__ == "__main__":  # the child of `_measure_in_child`
    _req = json.loads(sys.argv[1])
    _fp32, _bf16 = measure_steps(RunConfig.from_dict(_req["config"]), _req["num_classes"])
    print(json.dumps({"fp32_ms": _fp32, "bf16_ms": _bf16}))
