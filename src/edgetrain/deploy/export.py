"""Export a run to ONNX: the tested weights, a dynamic batch, a sidecar, a parity check against
PyTorch on real images, optional int8 static quantisation, inference figures in the run record.

Exporter: `torch.onnx.export(..., dynamo=True)`, the torch.export-based exporter (needs
onnxscript). It is the default since torch 2.9 and the maintained one; the TorchScript exporter
(`dynamo=False`) warns that it will be removed. It folds BatchNorm into the convolutions and
writes one self-contained file here (`external_data=False`; every model of the zoo is < 2 GB).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgetrain.deploy.evaluate import load_images, logits_of, remap_labels, split_args
from edgetrain.deploy.predict import checked_logits
from edgetrain.deploy.runmodel import RunModel, load_run_model
from edgetrain.deploy.runtime import load_onnx
from edgetrain.deploy.sidecar import Sidecar, sha256_file, sidecar_path, write_sidecar
from edgetrain.errors import EdgeTrainError
from edgetrain.preprocess import normalize

PARITY_MAX_ABS_DIFF = 1e-4  # fp32 onnxruntime vs PyTorch logits
PARITY_IMAGES = 32
INT8_MAX_DROP = 0.01  # int8 may lose at most 1 point of validation accuracy against fp32


def export_onnx(model: nn.Module, path: Path, resolution: int) -> None:
    """Write `model` (eval mode) as ONNX: input `input` float32 (N, 3, R, R), output `logits`
    (N, C), N dynamic. The exporter's progress chatter is kept off the terminal."""
    model = model.eval()
    x = torch.zeros(2, 3, resolution, resolution)  # batch 2: a batch of 1 would be specialised
    batch = torch.export.Dim("batch", min=1, max=4096)
    path.parent.mkdir(parents=True, exist_ok=True)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed" and similar notes
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=True,
                external_data=False,
                input_names=["input"],
                output_names=["logits"],
                dynamic_shapes=({0: batch},),
                verbose=False,
            )
    finally:
        quiet.setLevel(level)
    import onnx

    onnx.checker.check_model(str(path), full_check=True)


def parity(rm: RunModel, onnx_path: Path, sidecar: Sidecar, images: np.ndarray) -> dict[str, Any]:
    """max |onnxruntime - PyTorch| over the logits of uint8 `images`, and top-1 agreement. Each
    model normalises the images its own way (the sidecar's scale and offset for ONNX), so this
    checks the sidecar too; NaN logits are refused (NaN would pass a `diff > limit` test)."""
    om = load_onnx(onnx_path, sidecar=sidecar)
    ref, got = checked_logits(rm, images), checked_logits(om, images)
    return {
        "parity_images": len(images),
        "parity_max_abs_diff": float(np.abs(ref - got).max()),
        "parity_top1_equal": bool((ref.argmax(1) == got.argmax(1)).all()),
    }


def real_images(rm: RunModel, split: str, count: int) -> np.ndarray:
    """Up to `count` uint8 images of `split` of the run's data, spread over the split."""
    x, *_ = load_images(rm.config.data, split, rm.resolution, **split_args(rm.config))
    idx = np.linspace(0, len(x) - 1, num=min(count, len(x))).round().astype(int)
    return x[np.unique(idx)]


def make_sidecar(rm: RunModel, onnx_path: Path, *, precision: str, diff: float | None) -> Sidecar:
    return Sidecar(
        classes=rm.classes,
        resolution=rm.resolution,
        precision=precision,
        model=rm.config.model,
        spec_id=str(getattr(getattr(rm.model, "spec", None), "id", "")),
        source_run=str(rm.run.path.resolve()),
        run_id=rm.config.id,
        data=rm.config.data,
        split_seed=rm.config.split_seed,
        folds=rm.config.folds,
        fold=rm.config.fold,
        onnx_sha256=sha256_file(onnx_path),
        checkpoint_sha256=sha256_file(rm.checkpoint),
        parity_max_abs_diff=diff,
    )


def quantize_int8(fp32_path: Path, out_path: Path, calibration: np.ndarray) -> None:
    """Static int8 quantisation (QDQ, per-channel int8 weights, uint8 activations, MinMax
    calibration) from normalised calibration images (N, 3, R, R) float32."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                [{"input": calibration[i : i + 8]} for i in range(0, len(calibration), 8)]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    pre = out_path.with_name(out_path.name + ".pre.onnx")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre),
                str(out_path),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
    finally:
        pre.unlink(missing_ok=True)


# Record fields `export_run` fills (see `edgetrain.train.record.RunRecord`).
RECORD_FIELDS = (
    "onnx_latency_ms_b1",
    "onnx_latency_ms_b16",
    "onnx_int8_latency_ms_b1",
    "onnx_int8_latency_ms_b16",
    "onnx_file_mb",
    "onnx_int8_file_mb",
    "onnx_test_accuracy",
    "onnx_int8_test_accuracy",
    "infer_peak_rss_mb",
)


def export_run(
    run_dir: str | Path,
    *,
    out: str | Path | None = None,
    int8: bool = False,
    int8_anyway: bool = False,
    calibration: str | None = None,
    calibration_count: int = 64,
    measure: bool = True,
    repeat: int = 20,
) -> dict[str, Any]:
    """Export run `run_dir` to `out` (default RUN/model.onnx) with its sidecar, check parity with
    PyTorch, optionally add an int8 model, measure both in fresh processes, store the figures
    in the run's record.json (when the run is finished) and write the model card beside the
    ONNX file. Returns a summary dict.

    The int8 model is kept only when its validation accuracy is within `INT8_MAX_DROP` of the
    fp32 model's (validation, so that the choice never looks at test), or `int8_anyway`;
    otherwise it is deleted and `summary["int8_refused"]` says why."""
    rm = load_run_model(run_dir)
    fp32 = Path(out) if out else rm.run.path / "model.onnx"
    if fp32.suffix.lower() != ".onnx":
        raise EdgeTrainError(f"--out must name an .onnx file, got {fp32}")
    export_onnx(rm.model, fp32, rm.resolution)
    images, source = _parity_images(rm)
    check = parity(rm, fp32, make_sidecar(rm, fp32, precision="fp32", diff=None), images)
    diff = check["parity_max_abs_diff"]
    side = make_sidecar(rm, fp32, precision="fp32", diff=diff)
    sidecar = write_sidecar(fp32, side)
    if diff > PARITY_MAX_ABS_DIFF or not check["parity_top1_equal"]:
        raise EdgeTrainError(
            f"{fp32} does not reproduce PyTorch: max |logit difference| {diff:.2e} (limit "
            f"{PARITY_MAX_ABS_DIFF:.0e}), top-1 equal: {check['parity_top1_equal']}"
        )
    summary: dict[str, Any] = {"run": str(rm.run.path), "onnx": str(fp32), "sidecar": str(sidecar)}
    summary.update(check, parity_source=source, onnx_file_mb=fp32.stat().st_size / 2**20)
    if int8:
        summary.update(_export_int8(rm, fp32, calibration, calibration_count))
        summary.update(_int8_gate(summary, int8_anyway))
    if measure:
        summary.update(_measure(fp32, summary.get("onnx_int8"), repeat))
        summary["torch_latency_ms_b1"] = _record_value(rm, "infer_latency_ms_b1")
        summary["torch_latency_ms_b16"] = _record_value(rm, "infer_latency_ms_b16")
    summary["record_updated"] = _update_record(rm, summary)
    summary["card"] = str(_write_card(rm, fp32, side, summary))
    return summary


def _write_card(rm: RunModel, fp32: Path, sidecar: Sidecar, summary: dict[str, Any]) -> Path:
    from edgetrain.deploy.card import card_path, render_card, write_card

    record = rm.run.load_record().to_dict() if rm.run.is_finished() else {}
    record.setdefault("config", rm.config.to_dict())
    return write_card(card_path(fp32), render_card(record, sidecar, summary))


def _int8_gate(summary: dict[str, Any], anyway: bool) -> dict[str, Any]:
    """Keep or delete the int8 model by its validation accuracy against fp32's."""
    acc32, acc8 = summary.get("onnx_val_accuracy"), summary.get("onnx_int8_val_accuracy")
    if acc32 is None or acc8 is None or acc8 >= acc32 - INT8_MAX_DROP:
        return {}
    why = (
        f"int8 validation accuracy {acc8:.2%} is {100 * (acc32 - acc8):.1f} points below fp32's "
        f"{acc32:.2%} (at most {100 * INT8_MAX_DROP:.0f} allowed)"
    )
    if anyway:
        return {"int8_warning": why + "; kept because of --int8-anyway"}
    int8 = Path(summary.pop("onnx_int8"))
    int8.unlink(missing_ok=True)
    sidecar_path(int8).unlink(missing_ok=True)
    for key in ("onnx_int8_file_mb", "onnx_int8_test_accuracy", "int8_top1_agreement"):
        summary.pop(key, None)
    return {"int8_refused": why + "; the int8 model was not kept (--int8-anyway keeps it)"}


def _parity_images(rm: RunModel) -> tuple[np.ndarray, str]:
    """Real test images of the run's data; random pixels (said so) if the data is gone."""
    try:
        return real_images(rm, "test", PARITY_IMAGES), f"test split of {rm.config.data}"
    except EdgeTrainError as exc:
        rng = np.random.default_rng(0)
        r = rm.resolution
        x = rng.integers(0, 256, size=(PARITY_IMAGES, 3, r, r), dtype=np.uint8)
        return x, f"random pixels (the run's data is not readable: {exc})"


def _export_int8(rm: RunModel, fp32: Path, calibration: str | None, count: int) -> dict[str, Any]:
    """int8 model from `count` training images of `calibration` (default: the run's data), and
    the test accuracy of both models on the run's data."""
    ref = calibration or rm.config.data
    which = split_args(rm.config) if ref == rm.config.data else {}
    x, *_ = load_images(ref, "train", rm.resolution, **which)
    idx = np.random.default_rng(0).permutation(len(x))[:count]
    int8 = fp32.with_name(fp32.stem + ".int8.onnx")
    quantize_int8(fp32, int8, np.ascontiguousarray(normalize(x[np.sort(idx)])))
    write_sidecar(int8, make_sidecar(rm, int8, precision="int8", diff=None))
    out: dict[str, Any] = {
        "onnx_int8": str(int8),
        "onnx_int8_file_mb": int8.stat().st_size / 2**20,
        "calibration": f"{len(idx)} images of the train split of {ref}",
    }
    models = (load_onnx(fp32), load_onnx(int8))
    for split in ("val", "test"):
        try:
            xs, ys, data_classes, *_ = load_images(
                rm.config.data, split, rm.resolution, **split_args(rm.config)
            )
        except EdgeTrainError as exc:
            out[f"{split}_accuracy_note"] = f"{split} accuracy not measured: {exc}"
            continue
        targets = remap_labels(ys, data_classes, rm.classes)
        p32, p8 = (logits_of(m, xs).argmax(1) for m in models)
        out[f"onnx_{split}_accuracy"] = float((p32 == targets).mean())
        out[f"onnx_int8_{split}_accuracy"] = float((p8 == targets).mean())
        if split == "test":
            out["int8_top1_agreement"] = float((p32 == p8).mean())
    return out


def _measure(fp32: Path, int8: str | None, repeat: int) -> dict[str, Any]:
    """Latency at batch 1 and 16 and peak RSS of each model, each in a fresh process."""
    from edgetrain.deploy.measure import measure_in_subprocess

    m = measure_in_subprocess(fp32, repeat=repeat)
    out = {
        "onnx_latency_ms_b1": m["latency_ms_b1"],
        "onnx_latency_ms_b16": m["latency_ms_b16"],
        "infer_peak_rss_mb": m["peak_rss_mb"],
    }
    if int8:
        q = measure_in_subprocess(int8, repeat=repeat)
        out["onnx_int8_latency_ms_b1"] = q["latency_ms_b1"]
        out["onnx_int8_latency_ms_b16"] = q["latency_ms_b16"]
        out["onnx_int8_peak_rss_mb"] = q["peak_rss_mb"]
    return out


def _record_value(rm: RunModel, key: str) -> Any:
    return getattr(rm.run.load_record(), key, None) if rm.run.is_finished() else None


def _update_record(rm: RunModel, summary: dict[str, Any]) -> bool:
    """Store the export's figures in the run's record.json; False for an unfinished run."""
    if not rm.run.is_finished():
        return False
    record = rm.run.load_record()
    rm.run.save_record(record.replace(**{k: summary[k] for k in RECORD_FIELDS if k in summary}))
    return True


def format_lines(s: dict[str, Any]) -> list[str]:
    """What `edgetrain export` prints."""
    lines = [
        f"wrote {s['onnx']} ({s['onnx_file_mb']:.2f} MB) and {s['sidecar']}",
        f"parity on {s['parity_images']} images ({s['parity_source']}): max |logit difference| "
        f"{s['parity_max_abs_diff']:.2e}, top-1 identical: {s['parity_top1_equal']}",
    ]
    if "onnx_int8" in s:
        lines.append(
            f"wrote {s['onnx_int8']} ({s['onnx_int8_file_mb']:.2f} MB), {s['calibration']}"
        )
    if "onnx_int8_val_accuracy" in s:
        lines.append(
            f"validation accuracy: fp32 {s['onnx_val_accuracy']:.2%}, "
            f"int8 {s['onnx_int8_val_accuracy']:.2%}"
        )
    if "onnx_int8_test_accuracy" in s:
        lines.append(
            f"test accuracy: fp32 {s['onnx_test_accuracy']:.2%}, int8 "
            f"{s['onnx_int8_test_accuracy']:.2%} (top-1 agreement {s['int8_top1_agreement']:.1%})"
        )
    for key in ("int8_refused", "int8_warning"):
        if key in s:
            lines.append(f"{key.replace('_', ' ')}: {s[key]}")
    if "onnx_latency_ms_b1" in s:
        lines.append(_latency_line("onnxruntime fp32", s, "onnx_latency_ms"))
        if "onnx_int8_latency_ms_b1" in s:
            lines.append(_latency_line("onnxruntime int8", s, "onnx_int8_latency_ms"))
        if s.get("torch_latency_ms_b1") is not None:
            lines.append(_latency_line("PyTorch eager (at training)", s, "torch_latency_ms"))
        lines.append(f"inference peak RSS (onnxruntime, fp32): {s['infer_peak_rss_mb']:.0f} MB")
    if s.get("record_updated"):
        lines.append(f"figures added to {Path(s['run']) / 'record.json'}")
    if s.get("card"):
        lines.append(f"model card: {s['card']}")
    return lines


def _latency_line(label: str, s: dict[str, Any], key: str) -> str:
    return f"{label}: {s[key + '_b1']:.1f} ms at batch 1, {s[key + '_b16']:.1f} ms at batch 16"
