"""From a finished run's state to its RunRecord: the per-run figures derived from the history."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from typing import Any

from edgetrain import __version__
from edgetrain.measure import MB, environment, ru_maxrss_bytes
from edgetrain.train.record import RunRecord
from edgetrain.train.state import RunState

WARMUP_STEPS = 3  # the first steps of a process include allocator and kernel warm-up


def _tested_val(row: dict[str, Any], bn_statistics: str | None) -> float | None:
    """The last epoch's validation accuracy of the statistics that are tested."""
    if bn_statistics == "as trained" and row.get("val_accuracy_as_trained") is not None:
        return row["val_accuracy_as_trained"]
    return row["val_accuracy"]


def assemble_record(
    state: RunState,
    test: dict[str, Any],
    latency_ms: dict[int, float],
    test_as_trained: dict[str, Any] | None = None,
    test_recalibrated: dict[str, Any] | None = None,
) -> RunRecord:
    """The record of `state` after its last epoch; `test` from `step.evaluate` with the
    BatchNorm statistics that won on validation (`state.bn_statistics`), `latency_ms` the
    median inference latency per batch size (1 and 16), `test_as_trained` the test with the
    running averages as trained (None: the same), `test_recalibrated` the recalibrated test
    when the as-trained statistics won (else it is `test`)."""
    config, history = state.config, state.history
    footprint = state.footprint or {}
    peak_above = _peak_above_baseline_mb(history)
    step_ms = _steady_median(state.step_ms)
    permille = [r["system_ram_permille"] for r in history]
    stopped = len(history) < config.epochs
    return RunRecord(
        status="stopped_early" if stopped else "finished",
        stop_reason=state.run.stop_requested() if stopped else None,
        run_id=config.id,
        edgetrain_version=__version__,
        started=state.started,
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
        resumed=state.resumed,
        model=config.model,
        data=config.data,
        classes=state.classes,
        split_counts=state.splits.counts(),  # after decoding: files that failed are out
        skipped_files=state.splits.skipped_report(),
        augment=state.augment,
        test_accuracy=test["accuracy"],
        test_macro_f1=test["macro_f1"],
        test_loss=test["loss"],
        test_per_class_accuracy=test["per_class_accuracy"],
        test_confusion=test["confusion"],
        val_accuracy=_tested_val(history[-1], state.bn_statistics),
        test_accuracy_as_trained=(test_as_trained or test)["accuracy"],
        test_accuracy_recalibrated=(test_recalibrated or test)["accuracy"]
        if state.calibration
        else None,
        bn_statistics=state.bn_statistics if state.calibration else "as trained",
        val_accuracy_as_trained=_as_trained(history[-1]),
        bn_recalibration_images=len(state.calibration) if state.calibration else 0,
        precision=config.precision,
        precision_reason=state.precision_reason,
        **state.accel.describe(),
        **_device_memory(history),
        training_footprint_mb=_footprint_mb(state, peak_above),
        **_memory_fields(history, footprint, peak_above),
        system_ram_permille=statistics.mean(permille),
        system_ram_permille_per_epoch=permille,
        train_step_ms=step_ms,
        train_images_per_s=config.batch_size / step_ms * 1e3 if step_ms else None,
        epoch_s=statistics.mean(r["epoch_s"] for r in history),
        total_train_s=sum(r["epoch_s"] for r in history),
        infer_latency_ms_b1=latency_ms[1],
        infer_latency_ms_b16=latency_ms[16],
        params_trainable=sum(p.numel() for p in state.trainable()),
        params_total=state.facts.params_total,
        bn_stats=state.facts.bn_stats,
        macs=state.facts.macs,
        init=state.facts.init_info,
        plan=state.run.load_plan(),
        environment=environment(),
        config=config.to_dict(),
        history=history,
    )


def _memory_fields(
    history: list[dict[str, Any]], footprint: dict[str, float], peak_above_mb: float
) -> dict[str, Any]:
    total_s = sum(r["epoch_s"] for r in history)
    above_weights = footprint.get("above_weights_mb")
    return {
        "peak_rss_mb": max(r["peak_rss_mb"] for r in history),
        "mean_rss_mb": sum(r["mean_rss_mb"] * r["epoch_s"] for r in history) / total_s,
        "baseline_rss_mb": history[0]["baseline_rss_mb"],
        "peak_above_baseline_mb": peak_above_mb,
        # whole-process lifetime high-water mark (decoding included; Linux carries a parent's
        # value across exec, so it can exceed this run's own peak)
        "ru_maxrss_mb": ru_maxrss_bytes() / MB,
        "analytic_mb": footprint.get("total_mb"),
        "analytic": footprint or None,
        # the baseline already holds the weights: compare with what training adds on top
        "measured_over_analytic": peak_above_mb / above_weights if above_weights else None,
    }


def _device_memory(history: list[dict[str, Any]]) -> dict[str, float | None]:
    # GPU runs only: the largest per-epoch allocator peaks (None on the CPU)
    return {
        k: max((r[k] for r in history if r.get(k) is not None), default=None)
        for k in ("gpu_peak_allocated_mb", "gpu_peak_reserved_mb", "gpu_process_mb")
    }


def _footprint_mb(state: RunState, peak_above_mb: float) -> float:
    """What training needs of the device's memory: RSS above baseline on the CPU and on a
    unified-memory board (Jetson: CPU and GPU share RAM) RSS plus the device allocations; on a
    discrete GPU the device allocations."""
    gpu = _device_memory(state.history)["gpu_peak_allocated_mb"]
    if gpu is None:
        return peak_above_mb
    unified = state.accel.describe().get("unified_memory")
    return peak_above_mb + gpu if unified else gpu


def _as_trained(row: dict[str, Any]) -> float | None:
    # without recalibration the row's val_accuracy is already the as-trained figure
    value = row.get("val_accuracy_as_trained")
    return row["val_accuracy"] if value is None else value


def _peak_above_baseline_mb(history: list[dict[str, Any]]) -> float:
    # each process segment (a resumed run has several) has its own baseline
    return max(r["peak_rss_mb"] - r["baseline_rss_mb"] for r in history)


def _steady_median(step_ms: list[float]) -> float | None:
    steady = step_ms[WARMUP_STEPS:] or step_ms
    return statistics.median(steady) if steady else None
