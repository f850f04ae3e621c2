"""Training-step throughput and memory, PyTorch (edgetrain) vs Keras 3 + TensorFlow-CPU.

    python benchmarks/train_step.py [--models xception,xception_lite,mobilenet_v2,efficientnet_v2_b1]
        [--batch-size 16] [--resolution 224] [--warmup 3] [--repeat 8] [--variants nchw,cl,cl-bf16]
        [--keras-python .venv-keras/bin/python] [--no-keras] [--json]

The PyTorch step is the engine's: its model, its optimizer (fused Adam on the CPU). The run first
measures the machine's ceilings, a square matrix product in fp32 and in bf16 with each framework,
and then prints each model's achieved GFLOP/s (a step counted as 3 forward passes of the model's
MACs x 2) as a share of the faster framework's ceiling of that dtype.

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
    from edgetrain.models.profile import count_macs
    from edgetrain.train import RunConfig
    from edgetrain.train.step import make_optimizer

    torch.manual_seed(0)
    channels_last = args.variant.startswith("cl") or args.variant == "auto"
    bf16 = args.variant.endswith("bf16")
    chosen = None
    if args.variant == "auto":  # what `edgetrain train` does by default: precision auto
        # decided in a child process, so that its timed steps leave nothing in this one's heap
        # (in a first run they were here, and this process's peak above baseline read ~0)
        code = (
            "import json; from edgetrain.train import RunConfig; "
            "from edgetrain.train.precision import resolve_precision; "
            f"c, why = resolve_precision(RunConfig(model={args.model!r}, data='synthetic-pcb', "
            f"resolution={args.resolution}, batch_size={args.batch_size}), 101); "
            "print(json.dumps([c.precision, why]))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        precision, chosen = json.loads(done.stdout.strip().splitlines()[-1])
        bf16 = precision == "bf16"
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    model = create_model(args.model, num_classes=101).train().to(memory_format=fmt)
    # the engine's optimizer (fused Adam on the CPU), so the step is the one `edgetrain train` runs
    opt = make_optimizer(
        list(model.parameters()), RunConfig(model=args.model, data="synthetic-pcb")
    )
    # a training step is about 3 forward passes of FLOPs (backward: grads of inputs and weights)
    step_flop = 3 * 2 * count_macs(model, args.resolution, args.batch_size)
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
        "precision": "bf16" if bf16 else "fp32",
        "precision_reason": chosen,
        "model": args.model,
        "train_step_ms": step * 1e3,
        "train_images_per_s": args.batch_size / step,
        "gflop_per_s": step_flop / step / 1e9,
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


# --- the machine's ceiling: a square matrix product, fp32 and bf16 ---------------------------

CEILING_N, CEILING_REPEAT = 2048, 12


def _best_gflop_per_s(product, dtype) -> tuple[float, int]:
    """Best of CEILING_REPEAT square products; the size grows from 256 to CEILING_N while one
    product takes under 0.2 s, so a dtype without fast kernels (bf16 on a CPU without native bf16
    runs a reference loop) is measured in seconds, not hours. Returns (GFLOP/s, size)."""
    n = 256
    while True:
        t0 = time.perf_counter()
        run = product(n, dtype)  # builds the operands and runs once (warm-up)
        if n >= CEILING_N or time.perf_counter() - t0 > 0.2:
            break
        n *= 2
    best = float("inf")
    for _ in range(CEILING_REPEAT):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9, n


def _ceilings(framework: str, product, dtypes) -> dict:
    out = {"framework": framework}
    for name, dtype in dtypes:
        out[name], out[f"{name}_n"] = _best_gflop_per_s(product, dtype)
    return out


def torch_ceiling(args: argparse.Namespace) -> dict:
    import torch

    def product(n, dtype):
        a, b = (torch.randn(n, n).to(dtype) for _ in range(2))
        (run := lambda: a @ b)()
        return run

    return _ceilings("pytorch", product, (("fp32", torch.float32), ("bf16", torch.bfloat16)))


def keras_ceiling(args: argparse.Namespace) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    def product(n, dtype):
        a, b = (tf.cast(tf.random.normal((n, n)), dtype) for _ in range(2))
        (run := lambda: tf.matmul(a, b).numpy())()
        return run

    return _ceilings("tensorflow", product, (("fp32", tf.float32), ("bf16", tf.bfloat16)))


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
    if framework.startswith("torch"):
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
        help="PyTorch variants: nchw (fp32), cl (channels_last fp32), cl-bf16 (+ bf16 "
        "autocast), auto (channels_last, the precision `edgetrain train` chooses by default)",
    )
    ap.add_argument("--keras-python", default=str(HERE.parents[1] / ".venv-keras/bin/python"))
    ap.add_argument("--no-keras", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        fn = WORKERS[args.worker]
        args.model, args.variant = args.models, args.variants
        print(json.dumps(fn(args)))
        return

    keras_ok = not args.no_keras and Path(args.keras_python).is_file()
    variants = args.variants.split(",")
    ceilings = [_run_worker(sys.executable, "torch-ceiling", "-", args, "-")]
    if keras_ok:
        ceilings.append(_run_worker(args.keras_python, "keras-ceiling", "-", args))
    rows = []
    for model in args.models.split(","):
        row = {"model": model, "keras": {}}
        if keras_ok:
            row["keras"] = _run_worker(args.keras_python, "keras", model, args)
        for v in variants:
            row[v] = _run_worker(sys.executable, "torch", model, args, v)
        rows.append(row)
    if args.json:
        print(json.dumps({"ceilings": ceilings, "rows": rows}, indent=2))
        return
    _print_speed_table(args, rows, variants)
    _print_ceiling_table(rows, variants, ceilings)


def _ceiling(ceilings: list[dict], dtype: str) -> float | None:
    """The machine's ceiling for a dtype: the faster framework's matrix product."""
    found = [c[dtype] for c in ceilings if isinstance(c.get(dtype), float)]
    return max(found) if found else None


def _print_ceiling_table(rows: list[dict], variants: list[str], ceilings: list[dict]) -> None:
    print()
    for c in ceilings:
        if "error" in c:
            print(f"ceiling ({c['framework']}) failed: {c['error']}")
            continue
        print(f"{c['framework']:<10} square matrix product, best of {CEILING_REPEAT}: fp32 "
              f"{c['fp32']:.0f} GFLOP/s (n={c['fp32_n']}), bf16 {c['bf16']:.0f} (n={c['bf16_n']})")  # fmt: skip
    fp32, bf16 = _ceiling(ceilings, "fp32"), _ceiling(ceilings, "bf16")
    print("achieved GFLOP/s (3 forward passes per step) and share of the ceiling of its dtype "
          f"(fp32 {_fmt(fp32, '.0f')}, bf16 {_fmt(bf16, '.0f')})")  # fmt: skip
    print(f"{'model':<20}" + "".join(f"{v:>18}" for v in variants))
    for r in rows:
        line = f"{r['model']:<20}"
        for v in variants:
            g = r[v].get("gflop_per_s")
            top = bf16 if v.endswith("bf16") else fp32
            share = f"{g / top:.0%}" if g and top else "-"
            line += f"{_fmt(g, '10.0f')} {share:>7}"
        print(line)


def _print_speed_table(args: argparse.Namespace, rows: list[dict], variants: list[str]) -> None:
    from edgetrain.measure.environment import describe_cpu

    print(f"CPU: {describe_cpu()}")
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
    if "auto" in variants:
        for r in rows:
            t = r["auto"]
            if "error" not in t:
                print(f"auto, {r['model']}: {t['precision']} ({t['precision_reason']})")


WORKERS = {
    "torch": torch_worker,
    "keras": keras_worker,
    "torch-ceiling": torch_ceiling,
    "keras-ceiling": keras_ceiling,
}

if __name__ == "__main__":
    main()
