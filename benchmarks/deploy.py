"""Deployment: onnxruntime vs PyTorch eager latency, int8 vs fp32, file sizes, predict start-up.

    python benchmarks/deploy.py [--models xception,xception_lite,mobilenet_v2] [--resolution 224]
        [--repeat 10] [--runs RUN_DIR ...] [--data REF] [--json]

Latency table (random weights, 6 classes; weights do not change the time): each model exported
with `edgetrain.deploy.export.export_onnx`, int8 by `quantize_int8` calibrated on training
images of --data, and each of PyTorch eager (channels_last, inference_mode), onnxruntime fp32
and int8 timed in its own fresh process: median of --repeat calls at batch 1 and 16 after 5
warm-up calls, plus that process's peak RSS. Accuracy table (--runs, trained run directories):
`edgetrain export --int8` of each run, test accuracy of PyTorch (the run's record), fp32 ONNX and
int8 ONNX on the run's own test split. Start-up: `edgetrain predict` on one image, whole command,
wall time and peak RSS, with the .onnx and with the run directory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

PKU = "folder:../shared/data/pku-market-pcb-crops?group=^(\\d+)_"


class _Eager:
    """A zoo model in PyTorch eager, with the Predictor interface `measure.latency_ms` uses."""

    def __init__(self, name: str, resolution: int) -> None:
        import torch

        from edgetrain import create_model

        self.torch, self.resolution = torch, resolution
        self.model = create_model(name, num_classes=6).eval().to(memory_format=torch.channels_last)

    def logits(self, x: np.ndarray) -> np.ndarray:
        t = self.torch.from_numpy(x).contiguous(memory_format=self.torch.channels_last)
        with self.torch.inference_mode():
            return self.model(t).numpy()


def child_eager(name: str, resolution: int, repeat: int) -> None:
    from edgetrain.deploy.measure import latency_ms, peak_rss_mb

    m = _Eager(name, resolution)
    out = {f"latency_ms_b{b}": latency_ms(m, b, repeat) for b in (1, 16)}
    print(json.dumps({**out, "peak_rss_mb": peak_rss_mb()}))


def measure_eager(name: str, resolution: int, repeat: int) -> dict:
    cmd = [sys.executable, __file__, "--child-eager", name, "--resolution", str(resolution)]
    proc = subprocess.run([*cmd, "--repeat", str(repeat)], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def export_pair(name: str, resolution: int, calibration: np.ndarray, folder: Path) -> dict:
    """NAME.onnx and NAME.int8.onnx with minimal sidecars; their sizes."""
    import torch

    from edgetrain import create_model
    from edgetrain.deploy.export import export_onnx, quantize_int8
    from edgetrain.deploy.sidecar import Sidecar, sha256_file, write_sidecar

    classes = [f"c{i}" for i in range(6)]
    torch.manual_seed(0)
    fp32, int8 = folder / f"{name}.onnx", folder / f"{name}.int8.onnx"
    export_onnx(create_model(name, num_classes=6), fp32, resolution)
    quantize_int8(fp32, int8, calibration)
    for path, precision in ((fp32, "fp32"), (int8, "int8")):
        sc = Sidecar(classes, resolution, precision=precision, onnx_sha256=sha256_file(path))
        write_sidecar(path, sc)
    mb = {
        "onnx_file_mb": fp32.stat().st_size / 2**20,
        "onnx_int8_file_mb": int8.stat().st_size / 2**20,
    }
    return {"fp32": fp32, "int8": int8, **mb}


def calibration_images(data: str, resolution: int, count: int = 32) -> np.ndarray:
    from edgetrain.deploy.evaluate import load_images
    from edgetrain.preprocess import normalize

    x, *_ = load_images(data, "train", resolution)
    idx = np.sort(np.random.default_rng(0).permutation(len(x))[:count])
    return np.ascontiguousarray(normalize(x[idx]))


def latency_rows(args: argparse.Namespace, folder: Path) -> list[dict]:
    from edgetrain.deploy.measure import measure_in_subprocess

    names = args.models.split(",")
    # PyTorch first, while this process has run nothing yet: measured right after an export and
    # a quantisation in this process, eager children came out up to ~90x slower at batch 1 on a
    # loaded 2-core machine (cause not pinned down; measured alone they were normal)
    eagers = {name: measure_eager(name, args.resolution, args.repeat) for name in names}
    calib = calibration_images(args.data, args.resolution)
    rows = []
    for name in names:
        files = export_pair(name, args.resolution, calib, folder)
        eager = eagers[name]
        f32 = measure_in_subprocess(files["fp32"], repeat=args.repeat)
        i8 = measure_in_subprocess(files["int8"], repeat=args.repeat)
        row = {"model": name, "onnx_file_mb": files["onnx_file_mb"]}
        row["onnx_int8_file_mb"] = files["onnx_int8_file_mb"]
        for prefix, m in (("torch", eager), ("onnx", f32), ("onnx_int8", i8)):
            row[f"{prefix}_latency_ms_b1"] = m["latency_ms_b1"]
            row[f"{prefix}_latency_ms_b16"] = m["latency_ms_b16"]
            row[f"{prefix}_peak_rss_mb"] = m["peak_rss_mb"]
        rows.append(row)
        print(f"measured {name}", file=sys.stderr)
    return rows


def accuracy_rows(runs: list[str], repeat: int) -> list[dict]:
    from edgetrain.deploy.export import export_run
    from edgetrain.train.rundir import RunDir

    rows = []
    for run in runs:
        s = export_run(run, int8=True, calibration_count=64, repeat=repeat)
        rec = RunDir(run).load_record()
        rows.append(
            {
                "model": rec.model,
                "resolution": rec.config["resolution"],
                "epochs": rec.config["epochs"],
                "torch_test_accuracy": rec.test_accuracy,
                "onnx_test_accuracy": s.get("onnx_test_accuracy"),
                "onnx_int8_test_accuracy": s.get("onnx_int8_test_accuracy"),
                "int8_top1_agreement": s.get("int8_top1_agreement"),
                "parity_max_abs_diff": s["parity_max_abs_diff"],
                "onnx_latency_ms_b1": s.get("onnx_latency_ms_b1"),
                "onnx_int8_latency_ms_b1": s.get("onnx_int8_latency_ms_b1"),
            }
        )
    return rows


def startup(model: str, image: str) -> dict:
    """Wall time and peak RSS of `edgetrain predict MODEL IMAGE`, the whole command."""
    code = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    cmd = [sys.executable, "-m", "edgetrain", "predict", model, image]
    out = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True)
    wall_s, kib = out.stdout.split()
    return {"model": model, "wall_s": float(wall_s), "peak_rss_mb": int(kib) / 1024}


def _f(x: float | None, fmt: str = ".1f") -> str:
    return "–" if x is None else format(x, fmt)


def print_tables(lat: list[dict], acc: list[dict], starts: list[dict], resolution: int) -> None:
    if lat:
        print_latency(lat, resolution)
    if acc:
        print_accuracy(acc)
    if starts:
        print("\n`edgetrain predict` on one image, whole command\n")
        print("| model | wall (s) | peak RSS (MB) |\n|---|---:|---:|")
        for s in starts:
            print(f"| {s['model']} | {s['wall_s']:.2f} | {s['peak_rss_mb']:.0f} |")


def print_latency(lat: list[dict], resolution: int) -> None:
    print(f"\nInference latency at {resolution} px (ms, median), peak RSS (MB), file size (MB)\n")
    print(
        "| model | eager b1 | ort b1 | speed-up b1 | eager b16 | ort b16 | int8 b1 | int8 b16 "
        "| RSS eager | RSS ort | RSS int8 | fp32 MB | int8 MB |"
    )
    print("|---|" + "---:|" * 12)
    for r in lat:
        print(
            f"| {r['model']} | {_f(r['torch_latency_ms_b1'])} | {_f(r['onnx_latency_ms_b1'])} | "
            f"{r['torch_latency_ms_b1'] / r['onnx_latency_ms_b1']:.2f}x | "
            f"{_f(r['torch_latency_ms_b16'])} | {_f(r['onnx_latency_ms_b16'])} | "
            f"{_f(r['onnx_int8_latency_ms_b1'])} | {_f(r['onnx_int8_latency_ms_b16'])} | "
            f"{_f(r['torch_peak_rss_mb'], '.0f')} | {_f(r['onnx_peak_rss_mb'], '.0f')} | "
            f"{_f(r['onnx_int8_peak_rss_mb'], '.0f')} | {r['onnx_file_mb']:.1f} | "
            f"{r['onnx_int8_file_mb']:.1f} |"
        )


def print_accuracy(acc: list[dict]) -> None:
    if acc:
        print("\nTest accuracy of trained runs (PKU crops, board-wise split)\n")
        print(
            "| model | px | epochs | PyTorch | ONNX fp32 | ONNX int8 | int8 = fp32 top-1 "
            "| max logit diff |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in acc:
            print(
                f"| {r['model']} | {r['resolution']} | {r['epochs']} | "
                f"{r['torch_test_accuracy']:.1%} | {_f(r['onnx_test_accuracy'], '.1%')} | "
                f"{_f(r['onnx_int8_test_accuracy'], '.1%')} | "
                f"{_f(r['int8_top1_agreement'], '.1%')} | {r['parity_max_abs_diff']:.1e} |"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="xception,xception_lite,mobilenet_v2")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--runs", nargs="*", default=[], help="trained run directories")
    p.add_argument("--data", default=PKU, help="calibration data for the latency table's int8")
    p.add_argument("--json", action="store_true")
    p.add_argument("--child-eager", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_eager:
        child_eager(args.child_eager, args.resolution, args.repeat)
        return
    with tempfile.TemporaryDirectory() as tmp:
        lat = latency_rows(args, Path(tmp)) if args.models else []
    acc = accuracy_rows(args.runs, args.repeat)
    starts = []
    if args.runs:
        image = next(Path(args.data.split(":", 1)[1].split("?")[0]).rglob("*.jpg"))
        for model in (str(Path(args.runs[0]) / "model.onnx"), args.runs[0]):
            starts.append(startup(model, str(image)))
    if args.json:
        print(json.dumps({"latency": lat, "accuracy": acc, "startup": starts}, indent=2))
    else:
        print_tables(lat, acc, starts, args.resolution)


if __name__ == "__main__":
    sys.exit(main())
