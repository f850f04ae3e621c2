"""The training engine: prepare -> loop -> finish around one `RunState`.

`train(config, out_dir)` runs one training in the current process and returns its `RunRecord`;
`run_in_subprocess` (subprocess.py) runs it in a fresh Python process so that process-level
memory peaks belong to that run alone (the CLI's `edgetrain train` is itself such a process).

Where things plug in: the compute device and precision policy are the `Accelerator`
(accelerator.py); memory modes are functions in modes.py applied in `_build`; the memory budget
is budget.py; every file goes through `RunDir` (rundir.py); the record's schema is record.py.
"""

from __future__ import annotations

import contextlib
import gc
import math
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from edgetrain.data import BatchLoader, Splits, default_augment, load_split, resolve
from edgetrain.errors import EdgeTrainError
from edgetrain.measure import (
    MB,
    RssMark,
    RssSampler,
    SavedTensorsCounter,
    analytic_footprint,
    footprint_from,
    inference_latency_ms,
    peak_rss_bytes,
    reset_peak_rss,
    system_ram_permille,
)
from edgetrain.models.profile import count_macs, count_params
from edgetrain.train.accelerator import check_threads, resolve_accelerator
from edgetrain.train.assemble import assemble_record
from edgetrain.train.bnstats import (
    calibration_loader,
    recalibrate,
    recalibrated_layers,
    restore,
    snapshot,
)
from edgetrain.train.budget import (
    MemoryBudgetExceeded,
    apply_device_profile,
    check_budget,
    plan_memory,
)
from edgetrain.train.config import RunConfig
from edgetrain.train.modes import (
    enable_checkpointing,
    load_plain_state_dict,
    plain_state_dict,
    set_train_mode,
)
from edgetrain.train.planner import Plan
from edgetrain.train.precision import resolve_precision
from edgetrain.train.progress import TrainProgress
from edgetrain.train.recipe import WeightEma, lr_at, set_lr
from edgetrain.train.record import RunRecord
from edgetrain.train.rundir import RunDir
from edgetrain.train.setup import build_model
from edgetrain.train.show import print_plan
from edgetrain.train.state import EpochTotals, Feedback, ModelFacts, RunState
from edgetrain.train.step import evaluate, make_optimizer, train_step

__all__ = ["MemoryBudgetExceeded", "TrainingDiverged", "train"]


class TrainingDiverged(EdgeTrainError):
    """The loss became NaN or infinite."""


def train(
    config: RunConfig | None,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    memory_budget_mb: float | None = None,
    accelerator: str | None = None,
) -> RunRecord:
    """Train `config` and write its run directory (see rundir.py for the files). With
    `resume=True`, continue the run in `out_dir` from its last checkpoint (its saved config
    wins; `memory_budget_mb` gives a stopped run a new budget, and it is planned anew). A
    finished run is not trained again: its record is returned. `accelerator` moves a resumed
    run to another device (a checkpoint written on a GPU continues on the CPU, and back)."""
    run = RunDir(out_dir)
    feedback = Feedback(progress, log) if log else Feedback(progress)
    if resume and run.is_finished():
        feedback(f"{run} is already finished: nothing to resume")
        return run.load_record()
    config = _starting_config(config, run, resume, memory_budget_mb)
    if resume and accelerator and accelerator != config.accelerator:
        config = config.replace(accelerator=accelerator)
        _accelerator(config)  # refused before the run directory changes
        if config.memory_budget_mb:  # a budget means RSS on the CPU, device memory on a GPU
            config = run.forget_plan(config)
        run.write_config(config)
    _accelerator(config)  # a missing GPU or an unfit precision: refused before anything is written
    threads_warning = check_threads(config.threads)
    if threads_warning:
        print(threads_warning, file=sys.stderr)
    # resolve the data before claiming the run directory: a bad path leaves nothing behind
    splits = resolve(config.data, seed=config.split_seed, folds=config.folds, fold=config.fold)
    precision_reason = None
    if not resume:
        config, precision_reason = resolve_precision(config, len(splits.classes))
        run.claim(config)
    # one trainer per run directory: a second one (a retried bench cell) is refused
    with run.locked(), RssSampler(interval_s=0.05) as sampler:
        try:
            state = prepare(config, run, splits, sampler, feedback)
            state.precision_reason = precision_reason or state.precision_reason
        except BaseException:
            if not resume:
                run.abandon()  # a failed plan or --init leaves no half-made run behind
            raise
        run_epochs(state)
        return finish(state)


def _accelerator(config: RunConfig):
    accel = resolve_accelerator(
        # "auto" is resolved once the data says how many classes the model has (train())
        precision="fp32" if config.precision == "auto" else config.precision,
        channels_last=config.channels_last,
        accelerator=config.accelerator,
    )
    return accel


def _starting_config(
    config: RunConfig | None, run: RunDir, resume: bool, memory_budget_mb: float | None
) -> RunConfig:
    if not resume:
        assert config is not None
        config.validate()
        config = config.replace(memory_budget_mb=memory_budget_mb) if memory_budget_mb else config
        return apply_device_profile(config)
    config = run.load_config()
    if memory_budget_mb is not None:  # a new budget: plan again from the settings asked for
        config = run.forget_plan(config).replace(memory_budget_mb=memory_budget_mb)
        run.write_config(config)
    return config


# --- prepare ------------------------------------------------------------------------------------


def prepare(
    config: RunConfig,
    run: RunDir,
    splits: Splits,
    sampler: RssSampler,
    feedback: Feedback,
) -> RunState:
    """Data decoded and batched, the model built (and planned, within a budget), the optimizer
    made, a checkpoint restored when resuming; ends with the baseline RSS measured."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    if config.threads:
        torch.set_num_threads(config.threads)
    augment = default_augment(splits.ref) if config.augment is None else config.augment
    train_loader, eval_loaders = _loaders(config, splits, augment, feedback.progress)
    calibration = calibration_loader(
        train_loader.images, train_loader.labels, count=config.bn_recalibration_images,
        batch_size=config.batch_size, seed=config.seed, channels_last=config.channels_last,
    )  # fmt: skip
    built = build_model(config, len(splits.classes))
    params_total, bn_stats = count_params(built.model)
    facts = ModelFacts(
        params_total, bn_stats, count_macs(built.model, config.resolution), built.init_info
    )
    if config.memory_budget_mb and not run.plan.exists():
        _release_freed_memory()
        # the CPU: process RSS; a GPU: device memory (weights and buffers before a step)
        baseline = _accelerator(config).planning_baseline_bytes(built.model, sampler.sample_now())
        config, plan = plan_memory(config, built.model, len(splits.classes), baseline)
        _keep_plan(run, config, plan, feedback)
    if config.checkpointing:
        enable_checkpointing(built.model)
    accel = _accelerator(config)
    model = accel.place_model(built.model)
    state = RunState(
        config=config,
        run=run,
        splits=splits,
        augment=augment,
        train_loader=train_loader,
        eval_loaders=eval_loaders,
        calibration=calibration,
        model=model,
        frozen=built.frozen,
        optimizer=make_optimizer([p for p in model.parameters() if p.requires_grad], config),
        ema=WeightEma(model, config.ema_decay) if config.ema_decay else None,
        accel=accel,
        sampler=sampler,
        facts=facts,
        feedback=feedback,
        started=started,
    )
    _restore(state)
    _release_freed_memory()
    state.baseline_rss_mb = sampler.sample_now() / MB  # model built, data cached, no step yet
    sampler.mark("baseline")
    # the kernel's high-water mark catches spikes between two samples; restart it per epoch
    state.hwm_ok = reset_peak_rss()
    return state


def _loaders(
    config: RunConfig, splits: Splits, augment: bool, progress: bool
) -> tuple[BatchLoader, dict[str, BatchLoader]]:
    """Decode once (cached), then batch: the shuffled, augmented train loader and the
    in-order val/test loaders (an empty val split is allowed: no per-epoch validation)."""
    tensors = {
        s: load_split(splits, s, resolution=config.resolution, progress=progress)
        for s in ("train", "val", "test")
    }
    if len(tensors["train"][1]) < 2:
        raise EdgeTrainError(
            f"{config.data}: {len(tensors['train'][1])} training image(s) after decoding; "
            "training needs at least 2"
        )
    batch = dict(batch_size=config.batch_size, channels_last=config.channels_last)
    train = BatchLoader(
        *tensors["train"], shuffle=True, augment=augment, seed=config.seed, min_last=2, **batch
    )
    evals = {
        s: BatchLoader(*tensors[s], shuffle=False, augment=False, seed=0, **batch)
        for s in ("val", "test")
        if len(tensors[s][1])
    }
    return train, evals


def _keep_plan(run: RunDir, config: RunConfig, plan: Plan, feedback: Feedback) -> None:
    """Write the planned config and the plan into the run directory, and show the plan."""
    run.write_config(config)
    run.write_plan(plan.to_dict())
    if feedback.progress:
        print_plan(plan, Console(stderr=True))
    c = plan.chosen
    feedback(
        f"memory plan: {c.label()}, predicted peak {c.predicted_peak_mb:.0f} MB "
        f"of a {plan.budget_mb:.0f} MB budget"
    )


def _restore(state: RunState) -> None:
    """Continue from the run directory's last checkpoint, if there is one; a checkpoint of
    another shape or another model is refused with the reason, never half-loaded."""
    saved = state.run.load_resume_state()
    if saved is None:
        return
    _check_resume_state(saved, state.run.checkpoint)
    try:
        load_plain_state_dict(state.model, saved["model"])
        state.optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng_torch"])
        device_state = saved.get("device_state")
        if isinstance(device_state, dict):
            state.accel.load_state_dict(device_state)
        if state.ema is not None:
            state.ema.load_state_dict(saved["ema"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else repr(exc)
        raise EdgeTrainError(
            f"{state.run.checkpoint} does not fit this run's model and optimizer ({reason}); "
            "it belongs to another run: start a new run with another --out"
        ) from None
    state.history = saved["history"]
    state.start_epoch = int(saved["epoch"])
    state.best_val_accuracy = float(saved.get("best_val_accuracy", -1.0))
    reason = saved.get("precision_reason")
    state.precision_reason = reason if isinstance(reason, str) else None
    state.resumed = True
    state.feedback(f"resuming {state.run} after epoch {state.start_epoch}")


_RESUME_KEYS = {"model": dict, "optimizer": dict, "rng_torch": torch.Tensor, "history": list}


def _check_resume_state(saved: dict[str, Any], path: Path) -> None:
    wrong = [k for k, kind in _RESUME_KEYS.items() if not isinstance(saved.get(k), kind)]
    epoch = saved.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        wrong.append("epoch")
    if wrong:
        raise EdgeTrainError(
            f"{path} is not a training checkpoint of edgetrain (missing or malformed: "
            f"{', '.join(wrong)}); start a new run with another --out"
        )


def _release_freed_memory() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc malloc_trim), so the baseline
    is what the process holds, not what decoding or planning once used: otherwise training
    would reuse that cached memory and its peak above baseline would look smaller than it is."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


# --- the loop -----------------------------------------------------------------------------------


def run_epochs(state: RunState) -> None:
    """Train from `state.start_epoch` to the last epoch; after each: measure, validate, save."""
    config, model, accel = state.config, state.model, state.accel
    steps = len(state.train_loader)
    bar = TrainProgress(enabled=state.feedback.progress, epochs=config.epochs, steps=steps)
    with bar:
        for epoch in range(state.start_epoch, config.epochs):
            set_train_mode(model, state.frozen)
            mark = state.sampler.mark(f"epoch {epoch + 1}")
            accel.reset_peaks()
            totals, t_epoch = EpochTotals(), time.perf_counter()
            bar.start_epoch(epoch)
            for step, batch in enumerate(state.train_loader.epoch(epoch)):
                x, y = accel.batch(*batch)
                set_lr(state.optimizer, _lr(config, epoch * steps + step, steps))
                counter = SavedTensorsCounter(exclude=model) if state.footprint is None else None
                t0 = time.perf_counter()
                loss, n_correct = train_step(
                    model, state.optimizer, x, y,
                    micro_batch=state.micro_batch, accel=accel, counter=counter,
                    label_smoothing=config.label_smoothing,
                )  # fmt: skip
                if state.ema is not None:  # part of what a step costs: inside the timer
                    state.ema.update(model)
                accel.synchronize()
                dt_ms = (time.perf_counter() - t0) * 1e3
                _check_finite(state, epoch, step, loss)
                if counter is not None:
                    state.footprint = footprint_from(model, state.optimizer, counter).to_dict()
                check_budget(state, epoch, step)
                state.step_ms.append(dt_ms)
                totals.add(loss, n_correct, len(y))
                _show_step(state, bar, totals, epoch, step, len(y) / dt_ms * 1e3, t_epoch)
            row = _end_epoch(state, epoch, mark, totals, time.perf_counter() - t_epoch)
            bar.end_epoch(row)
            state.feedback(_epoch_line(row, config.epochs))
            if epoch + 1 < config.epochs:
                state.run.wait_for_verdict(epoch + 1)  # an early-stopping watcher, if any
            reason = state.run.stop_requested()
            if reason and epoch + 1 < config.epochs:
                state.feedback(f"stopping after epoch {epoch + 1} as requested: {reason}")
                break


def _lr(config: RunConfig, step: int, steps_per_epoch: int) -> float:
    """The rate of optimizer step `step` of the run (a pure function of it: resume-safe)."""
    return lr_at(
        step,
        base_lr=config.lr,
        total_steps=config.epochs * steps_per_epoch,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
        schedule=config.lr_schedule,
    )


def _show_step(
    state: RunState,
    bar: TrainProgress,
    totals: EpochTotals,
    epoch: int,
    step: int,
    img_s: float,
    t_epoch: float,
) -> None:
    """The progress bar here, and progress.json for a bench watching this run (at most every
    two seconds: the write is skipped in between)."""
    rss_mb = state.sampler.last_bytes / MB
    bar.step(loss=totals.loss, acc=totals.accuracy, img_s=img_s, rss_mb=rss_mb)
    state.run.write_progress(
        epoch=epoch + 1,
        epochs=state.config.epochs,
        step=step + 1,
        steps=len(state.train_loader),
        loss=totals.loss,
        img_s=img_s,
        rss_mb=rss_mb,
        epoch_elapsed_s=time.perf_counter() - t_epoch,
    )


def evaluate_split(
    state: RunState, split: str, *, keep_recalibrated: bool
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the evaluation that counts, the as-trained one) of `split`. With recalibration on, the
    one that counts uses BatchNorm statistics re-estimated from the calibration sample and the
    as-trained one the running averages; off, the first is as trained and the second None.
    `keep_recalibrated=False` puts the as-trained statistics back (training goes on with them,
    so every epoch's as-trained figure is the paper's)."""
    loader = state.eval_loaders.get(split)
    if state.ema is not None and not keep_recalibrated:  # the averaged weights, then back
        with state.ema.swapped_in(state.model):
            return _evaluate_split(state, loader, keep_recalibrated=False)
    return _evaluate_split(state, loader, keep_recalibrated=keep_recalibrated)


def _evaluate_split(
    state: RunState, loader: Any, *, keep_recalibrated: bool
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    as_trained = evaluate(state.model, loader, state.num_classes, state.accel)
    layers = recalibrated_layers(state.model, state.frozen)
    if as_trained is None or state.calibration is None or not layers:
        return as_trained, None
    saved = snapshot(layers)
    recalibrate(state.model, state.calibration, state.frozen, state.accel)
    result = evaluate(state.model, loader, state.num_classes, state.accel)
    if not keep_recalibrated:
        restore(layers, saved)
    return result, as_trained


def _check_finite(state: RunState, epoch: int, step: int, loss: float) -> None:
    if math.isfinite(loss):
        return
    last = (
        f"{state.run.checkpoint} (after epoch {state.history[-1]['epoch']})"
        if state.history and state.run.checkpoint.exists()
        else "none (it diverged in the first epoch)"
    )
    raise TrainingDiverged(
        f"loss became {loss} at epoch {epoch + 1}, step {step + 1}/{len(state.train_loader)}; "
        f"training stopped. Last good checkpoint: {last}. Try a lower --lr."
    )


def _end_epoch(
    state: RunState, epoch: int, mark: RssMark, totals: EpochTotals, epoch_s: float
) -> dict[str, Any]:
    """Measure the epoch, validate, append the history row and save everything to resume from."""
    window = state.sampler.window(mark)
    hwm_mb = peak_rss_bytes() / MB if state.hwm_ok else 0.0
    val, val_as_trained = evaluate_split(state, "val", keep_recalibrated=False)
    row = {
        "epoch": epoch + 1,
        "train_loss": totals.loss,
        "train_accuracy": totals.accuracy,
        "val_loss": val["loss"] if val else None,
        "val_accuracy": val["accuracy"] if val else None,
        "val_macro_f1": val["macro_f1"] if val else None,
        "val_accuracy_as_trained": val_as_trained["accuracy"] if val_as_trained else None,
        "lr": state.optimizer.param_groups[0]["lr"],  # of the epoch's last step
        "epoch_s": epoch_s,
        "train_images_per_s": totals.seen / epoch_s,
        "peak_rss_mb": max(window.peak_bytes / MB, hwm_mb),
        "sampled_peak_rss_mb": window.peak_bytes / MB,
        "mean_rss_mb": window.mean_bytes / MB,
        "baseline_rss_mb": state.baseline_rss_mb,
        "system_ram_permille": system_ram_permille(),
        **state.accel.memory_mb(),  # on a GPU: the allocator's peaks of this epoch
    }
    state.history.append(row)
    if state.config.select == "best-val" and val and val["accuracy"] > state.best_val_accuracy:
        state.best_val_accuracy = val["accuracy"]
        with state.ema.swapped_in(state.model) if state.ema else contextlib.nullcontext():
            best = plain_state_dict(state.model)  # the weights that were validated
            state.run.save_state({"model": best, "epoch": epoch + 1}, which="best")
    _save_checkpoint(state, epoch)
    state.run.write_history(state.history)
    state.run.append_rss(*state.sampler.samples_since(mark), epoch=str(epoch + 1))
    if state.hwm_ok:
        reset_peak_rss()
    return row


def _save_checkpoint(state: RunState, epoch: int) -> None:
    state.run.save_state(
        {
            "model": plain_state_dict(state.model),
            "optimizer": state.optimizer.state_dict(),
            "rng_torch": torch.get_rng_state(),
            "device_state": state.accel.state_dict(),  # CUDA RNG and fp16 loss scale on a GPU
            "epoch": epoch + 1,
            "history": state.history,
            "best_val_accuracy": state.best_val_accuracy,
            "precision_reason": state.precision_reason,
            "ema": state.ema.state_dict() if state.ema is not None else None,
            "classes": state.classes,
            "config": state.config.to_dict(),
        }
    )


def _as_trained_statistics_win(state: RunState) -> bool:
    """Whether the running BatchNorm statistics as trained beat the recalibrated ones on the
    last epoch's validation split (never the test split): then they are what is tested, saved
    and exported. Measured on the PKU crops, efficientnet_v2_b0's running averages (Keras rate
    0.1) beat recalibration on 512 images; mobilenet_v2's (rate 0.001) are at chance."""
    row = state.history[-1] if state.history else {}
    recal, trained = row.get("val_accuracy"), row.get("val_accuracy_as_trained")
    return recal is not None and trained is not None and trained > recal


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    val = f" val_acc {row['val_accuracy']:.3f}" if row["val_accuracy"] is not None else ""
    if row.get("val_accuracy_as_trained") is not None:
        val += f" (as trained {row['val_accuracy_as_trained']:.3f})"
    return (
        f"epoch {row['epoch']}/{epochs} loss {row['train_loss']:.4f} "
        f"acc {row['train_accuracy']:.3f}{val} {row['epoch_s']:.1f}s "
        f"{row['train_images_per_s']:.1f} img/s peak_rss {row['peak_rss_mb']:.0f} MB"
    )


# --- finish -------------------------------------------------------------------------------------


def finish(state: RunState) -> RunRecord:
    """Test the selected model, time inference, write record.json and the plots."""
    config, run = state.config, state.run
    if config.select == "best-val" and run.best.is_file():
        load_plain_state_dict(state.model, run.load_state("best")["model"])
    elif state.ema is not None:  # the averaged weights are the tested (and exported) model
        state.ema.copy_to(state.model)
    as_trained_wins = _as_trained_statistics_win(state)
    test, test_as_trained = evaluate_split(state, "test", keep_recalibrated=not as_trained_wins)
    test_recalibrated = None
    if as_trained_wins and test_as_trained is not None:  # test and save the as-trained model
        test_recalibrated, test = test, test_as_trained
    state.bn_statistics = "as trained" if as_trained_wins else "recalibrated"
    run.save_state({"model": plain_state_dict(state.model)}, which="tested")
    latency = {
        b: inference_latency_ms(
            state.model,
            batch_size=b,
            resolution=config.resolution,
            channels_last=config.channels_last,
            repeat=config.latency_repeat,
        )["median_ms"]
        for b in (1, 16)
    }
    if state.footprint is None:  # resumed after the last epoch: measure one step's anyway
        set_train_mode(state.model, state.frozen)
        x, y = state.accel.batch(*next(iter(state.train_loader.epoch(0))))
        with state.accel.autocast():
            m = state.micro_batch
            fp = analytic_footprint(state.model, state.optimizer, x[:m], y[:m])
        state.footprint = fp.to_dict()
    record = assemble_record(state, test, latency, test_as_trained, test_recalibrated)
    run.save_record(record)
    try:
        from edgetrain.train.plots import plot_run

        plot_run(run.path)
    except Exception as exc:  # a plot must never cost the user a finished run
        state.feedback(f"warning: plots not written: {exc}")
    return record
