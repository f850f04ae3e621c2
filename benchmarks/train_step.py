"""Training-step throughput and memory, PyTorch (edgetrain) vs Keras 3 + TensorFlow-CPU.

    python benchmarks/train_step.py [--models xception,xception_lite,mobilenet_v2,efficientnet_v2_b1]
        [--batch-size 16] [--resolution 224] [--warmup 3] [--repeat 8] [--channels-last]
        [--keras-python .venv-keras/bin/python] [--no-keras] [--json]

Every (framework, model) runs in a fresh process, so the process peak belongs to that run:
baseline = RSS with the model built, the optimizer created and the batch in memory, before the
first step; peak = max of a 20 Hz RSS sampler and the kernel's high-water mark over the timed
steps. For PyTorch it also prints the analytic footprint (weights + grads + Adam state + bytes
saved for backward, from the actual tensors) and measured / analytic, where the baseline already
holds the weights so the ratio compares (peak - baseline) with the footprint minus weights.

The Keras side needs a separate environment: `make keras-venv` (keras + tensorflow-cpu).
Without it the Keras columns are left empty.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()
MB = 2**20


# --- a dependency-free RSS probe (the Keras worker must not import torch) ----------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_hwm() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class _Sampler:
    def __init__(self, interval_s: float = 0.05) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True, args=(interval_s,))

    def _run(self, interval_s: float) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            self._stop.wait(interval_s)

    def __enter__(self) -> _Sampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_bytes(), _hwm_bytes())


# --- workers -------------------------------------------------------------------------------


def torch_worker(args: argparse.Namespace) -> dict:
    import torch
    from torch import nn

    from edgetrain import create_model
    from edgetrain.measure import SavedTensorsCounter, footprint_from

    torch.manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = create_model(args.model, num_classes=101).train().to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch_size, 3, args.resolution, args.resolution).to(memory_format=fmt)
    y = torch.randint(0, 101, (args.batch_size,))
    baseline = _rss_bytes()
    _reset_hwm()
    times, footprint = [], None
    with _Sampler() as sampler:
        for i in range(args.warmup + args.repeat):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            if i == 0:
                counter = SavedTensorsCounter(exclude=model)
                with counter:
                    loss = nn.functional.cross_entropy(model(x), y)
            else:
                loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            if i == 0:
                footprint = footprint_from(model, opt, counter).to_dict()
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    above = (sampler.peak - baseline) / MB
    return {
        "framework": "pytorch",
        "model": args.model,
        "train_step_ms": step * 1e3,
        "train_images_per_s": args.batch_size / step,
        "baseline_rss_mb": baseline / MB,
        "peak_above_baseline_mb": above,
        "analytic_mb": footprint["total_mb"],
        "analytic_above_weights_mb": footprint["above_weights_mb"],
        "measured_over_analytic": above / footprint["above_weights_mb"],
        "threads": torch.get_num_threads(),
    }


def keras_worker(args: argparse.Namespace) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    from keras import layers

    def head(backbone, inputs):
        x = layers.GlobalAveragePooling2D()(backbone)
        x = layers.Dropout(0.2)(x)
        return keras.Model(inputs, layers.Dense(101)(x))

    def xception_lite(inputs):
        # Mih et al. 2024 as ../shared/DESIGN.md describes it, with Keras layers
        x = inputs
        for i, w in enumerate((32, 64)):
            x = layers.Conv2D(w, 3, strides=2 if i == 0 else 1, padding="same")(x)
            x = layers.ReLU()(layers.BatchNormalization()(x))
        for w in (128, 256, 512):
            r = layers.Conv2D(w, 1, strides=2, padding="same")(x)
            x = layers.ReLU()(x)
            x = layers.BatchNormalization()(layers.SeparableConv2D(w, 1, padding="same")(x))
            x = layers.ReLU()(x)
            x = layers.BatchNormalization()(layers.SeparableConv2D(w, 3, padding="same")(x))
            x = layers.add([layers.MaxPooling2D(3, 2, padding="same")(x), r])
        for _ in range(8):
            r = x
            for w, k in ((256, 1), (512, 1), (512, 3)):
                x = layers.ReLU()(x)
                x = layers.BatchNormalization()(layers.SeparableConv2D(w, k, padding="same")(x))
            x = layers.add([x, r])
        r = layers.Conv2D(1024, 3, strides=2, padding="same")(x)
        x = layers.ReLU()(x)
        x = layers.BatchNormalization()(layers.SeparableConv2D(728, 1, padding="same")(x))
        x = layers.ReLU()(x)
        x = layers.BatchNormalization()(layers.SeparableConv2D(1024, 3, padding="same")(x))
        x = layers.add([layers.MaxPooling2D(3, 2, padding="same")(x), r])
        for w in (1536, 2048):
            x = layers.BatchNormalization()(layers.SeparableConv2D(w, 3, padding="same")(x))
            x = layers.ReLU()(x)
        return x

    shape = (args.resolution, args.resolution, 3)
    inputs = keras.Input(shape)
    apps = keras.applications
    builders = {
        "xception": lambda: apps.Xception(include_top=False, weights=None, input_tensor=inputs),
        "mobilenet_v2": lambda: apps.MobileNetV2(
            include_top=False, weights=None, input_tensor=inputs
        ),
        "efficientnet_v2_b0": lambda: apps.EfficientNetV2B0(
            include_top=False, weights=None, input_tensor=inputs, include_preprocessing=False
        ),
        "efficientnet_v2_b1": lambda: apps.EfficientNetV2B1(
            include_top=False, weights=None, input_tensor=inputs, include_preprocessing=False
        ),
    }
    if args.model == "xception_lite":
        model = head(xception_lite(inputs), inputs)
    elif args.model in builders:
        model = head(builders[args.model]().output, inputs)
    else:
        return {"framework": "keras", "model": args.model, "error": "no Keras model"}
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch_size, *shape), dtype=np.float32)
    y = rng.integers(0, 101, args.batch_size)
    baseline = _rss_bytes()
    _reset_hwm()
    times = []
    with _Sampler() as sampler:
        for i in range(args.warmup + args.repeat):
            t0 = time.perf_counter()
            model.train_on_batch(x, y)
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    return {
        "framework": "keras",
        "model": args.model,
        "train_step_ms": step * 1e3,
        "train_images_per_s": args.batch_size / step,
        "baseline_rss_mb": baseline / MB,
        "peak_above_baseline_mb": (sampler.peak - baseline) / MB,
        "params": int(model.count_params()),
        "keras": keras.__version__,
    }


# --- the driver ------------------------------------------------------------------------------


def _run_worker(python: str, framework: str, model: str, args: argparse.Namespace) -> dict:
    cmd = [
        python,
        str(HERE),
        "--worker",
        framework,
        "--models",
        model,
        "--batch-size",
        str(args.batch_size),
        "--resolution",
        str(args.resolution),
        "--warmup",
        str(args.warmup),
        "--repeat",
        str(args.repeat),
    ]
    if args.channels_last:
        cmd.append("--channels-last")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"framework": framework, "model": model, "error": " | ".join(tail)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(v, spec: str) -> str:
    return format(v, spec) if isinstance(v, int | float) else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="xception,xception_lite,mobilenet_v2,efficientnet_v2_b1")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=8)
    ap.add_argument("--channels-last", action="store_true", help="PyTorch in channels_last")
    ap.add_argument("--keras-python", default=str(HERE.parents[1] / ".venv-keras/bin/python"))
    ap.add_argument("--no-keras", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", choices=["torch", "keras"], help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        fn = torch_worker if args.worker == "torch" else keras_worker
        args.model = args.models
        print(json.dumps(fn(args)))
        return

    keras_ok = not args.no_keras and Path(args.keras_python).is_file()
    rows = []
    for model in args.models.split(","):
        t = _run_worker(sys.executable, "torch", model, args)
        k = _run_worker(args.keras_python, "keras", model, args) if keras_ok else {}
        rows.append({"model": model, "pytorch": t, "keras": k})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    layout = "channels_last" if args.channels_last else "NCHW"
    print(
        f"training step, batch {args.batch_size}, {args.resolution} px, Adam; PyTorch "
        f"{layout}; median of {args.repeat} after {args.warmup} warm-up; MB = 2^20 bytes"
    )
    head = (
        f"{'model':<20}{'torch img/s':>12}{'keras img/s':>12}{'speed-up':>9}"
        f"{'torch +MB':>11}{'keras +MB':>11}{'mem ratio':>10}{'analytic MB':>12}"
        f"{'meas/anal':>10}"
    )
    print(head)
    for r in rows:
        t, k = r["pytorch"], r["keras"]
        if "error" in t:
            print(f"{r['model']:<20} pytorch failed: {t['error']}")
            continue
        ks = k.get("train_images_per_s")
        km = k.get("peak_above_baseline_mb")
        speed = t["train_images_per_s"] / ks if ks else None
        mem = t["peak_above_baseline_mb"] / km if km else None
        print(
            f"{r['model']:<20}{_fmt(t['train_images_per_s'], '12.2f')}{_fmt(ks, '12.2f')}"
            f"{_fmt(speed, '8.2f')}x{_fmt(t['peak_above_baseline_mb'], '11.0f')}"
            f"{_fmt(km, '11.0f')}{_fmt(mem, '10.2f')}{_fmt(t['analytic_mb'], '12.0f')}"
            f"{_fmt(t['measured_over_analytic'], '10.2f')}"
        )
        if k.get("error"):
            print(f"{'':<20} keras: {k['error']}")
    print(
        "+MB: peak RSS above the baseline (model, optimizer and batch ready); mem ratio: "
        "torch / keras; meas/anal: torch +MB / (analytic footprint - weights)"
    )


if __name__ == "__main__":
    main()
