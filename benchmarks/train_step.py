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
    channels_last = args.variant.startswith("cl")
    bf16 = args.variant.endswith("bf16")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
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
                    with autocast:
                        logits = model(x)
                    loss = nn.functional.cross_entropy(logits.float(), y)
            else:
                with autocast:
                    logits = model(x)
                loss = nn.functional.cross_entropy(logits.float(), y)
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
        "variant": args.variant,
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


def _run_worker(
    python: str, framework: str, model: str, args: argparse.Namespace, variant: str = ""
) -> dict:
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
    if framework == "torch":
        cmd += ["--variants", variant]
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
    ap.add_argument(
        "--variants",
        default="nchw,cl,cl-bf16",
        help="PyTorch variants: nchw (fp32), cl (channels_last fp32), cl-bf16 (+ bf16 autocast)",
    )
    ap.add_argument("--keras-python", default=str(HERE.parents[1] / ".venv-keras/bin/python"))
    ap.add_argument("--no-keras", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", choices=["torch", "keras"], help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        fn = torch_worker if args.worker == "torch" else keras_worker
        args.model, args.variant = args.models, args.variants
        print(json.dumps(fn(args)))
        return

    keras_ok = not args.no_keras and Path(args.keras_python).is_file()
    variants = args.variants.split(",")
    rows = []
    for model in args.models.split(","):
        row = {"model": model, "keras": {}}
        if keras_ok:
            row["keras"] = _run_worker(args.keras_python, "keras", model, args)
        for v in variants:
            row[v] = _run_worker(sys.executable, "torch", model, args, v)
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"training step, batch {args.batch_size}, {args.resolution} px, Adam, median of "
        f"{args.repeat} after {args.warmup} warm-up, each in a fresh process; MB = 2^20 bytes"
    )
    print("img/s (x = speed-up over Keras) and peak RSS above baseline in MB (x = torch / keras)")
    head = f"{'model':<20}{'keras':>16}" + "".join(f"{v:>22}" for v in variants)
    print(head + f"{'analytic MB':>13}{'meas/anal':>10}")
    for r in rows:
        k = r["keras"]
        ks, km = k.get("train_images_per_s"), k.get("peak_above_baseline_mb")
        line = f"{r['model']:<20}{_fmt(ks, '7.2f')}/s {_fmt(km, '5.0f')}MB"
        for v in variants:
            t = r[v]
            if "error" in t:
                line += f"{'failed':>22}"
                continue
            speed = f"{t['train_images_per_s'] / ks:.2f}x" if ks else "-"
            mem = f"{t['peak_above_baseline_mb'] / km:.2f}x" if km else "-"
            line += f"{t['train_images_per_s']:7.2f} {speed:>5} {t['peak_above_baseline_mb']:5.0f} {mem:>5}"
        first = r[variants[0]]
        line += f"{_fmt(first.get('analytic_mb'), '13.0f')}{_fmt(first.get('measured_over_analytic'), '10.2f')}"
        print(line)
        for name, t in (("keras", k), *((v, r[v]) for v in variants)):
            if t.get("error"):
                print(f"{'':<20}{name} failed: {t['error']}")
    print(
        f"analytic and meas/anal are for {variants[0]}: meas/anal = peak above baseline / "
        "(analytic footprint - weights), the baseline already holding the weights"
    )


if __name__ == "__main__":
    main()
