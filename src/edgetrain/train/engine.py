"""The training loop, readable top to bottom, and the measurements around it.

`train(config, out_dir)` runs one training in the current process and returns its `RunRecord`;
`run_in_subprocess` runs it in a fresh Python process so that process-level memory peaks belong
to that run alone (the CLI's `edgetrain train` is itself such a fresh process).
"""

from __future__ import annotations

import gc
import json
import math
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgetrain import __version__
from edgetrain.data import BatchLoader, default_augment, load_split, resolve
from edgetrain.errors import EdgeTrainError
from edgetrain.measure import (
    MB,
    RssSampler,
    SavedTensorsCounter,
    analytic_footprint,
    environment,
    footprint_from,
    inference_latency_ms,
    peak_rss_bytes,
    reset_peak_rss,
    ru_maxrss_bytes,
    system_ram_permille,
)
from edgetrain.models import create_model
from edgetrain.models.profile import count_macs, count_params
from edgetrain.train import metrics
from edgetrain.train.checkpoint import (
    CHECKPOINT,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
)
from edgetrain.train.config import RunConfig
from edgetrain.train.modes import (
    apply_train_scope,
    autocast_context,
    cpu_supports_bf16,
    enable_checkpointing,
    load_init_weights,
    load_plain_state_dict,
    plain_state_dict,
    set_bn_momentum,
    set_inplace_activations,
    set_train_mode,
)
from edgetrain.train.progress import TrainProgress
from edgetrain.train.record import CONFIG, HISTORY, RSS_TRACE, RunRecord, write_history_csv

WARMUP_STEPS = 3  # the first steps of a process include allocator and kernel warm-up


class TrainingDiverged(EdgeTrainError):
    """The loss became NaN or infinite."""


class MemoryBudgetExceeded(EdgeTrainError):
    """The process RSS crossed the run's memory budget; training stopped with a checkpoint."""


def train(
    config: RunConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> RunRecord:
    """Train `config` and write its run directory: config.json, checkpoint.pt (every epoch),
    history.csv, rss.csv, record.json and plots. With `resume=True`, continue the run in
    `out_dir` from its last checkpoint (the config saved there wins)."""
    run_dir = Path(out_dir)
    state = None
    if resume:
        config, state = _load_for_resume(run_dir)
    else:
        config.validate()
        config = _apply_device(config)
    if config.precision == "bf16" and not cpu_supports_bf16():
        raise EdgeTrainError(
            "this CPU has no native bf16 (avx512_bf16 or amx_bf16); emulated bf16 is slower "
            "than fp32. Use --precision fp32."
        )
    # resolve the data before claiming the run directory: a bad path leaves nothing behind
    splits = resolve(config.data, seed=config.split_seed)
    if not resume:
        _claim_run_dir(run_dir, config)
    sampler = RssSampler(interval_s=0.05)
    sampler.start()
    try:
        return _train(
            config, splits, run_dir, state, sampler, progress=progress, log=log or _no_log
        )
    finally:
        sampler.stop()


def _no_log(_msg: str) -> None:
    pass


def _train(
    config: RunConfig,
    splits: Any,
    run_dir: Path,
    state: dict[str, Any] | None,
    sampler: RssSampler,
    *,
    progress: bool,
    log: Callable[[str], None],
) -> RunRecord:
    started = datetime.now(UTC).isoformat(timespec="seconds")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)

    # --- data: resolve, decode once (cached), batch ----------------------------------------------
    classes = list(splits.classes)
    augment = default_augment(splits.ref) if config.augment is None else config.augment
    tensors = {
        s: load_split(splits, s, resolution=config.resolution, progress=progress)
        for s in ("train", "val", "test")
    }
    train_loader = BatchLoader(
        *tensors["train"],
        batch_size=config.batch_size,
        shuffle=True,
        augment=augment,
        seed=config.seed,
        channels_last=config.channels_last,
    )
    eval_loaders = {
        s: BatchLoader(
            *tensors[s],
            batch_size=config.batch_size,
            shuffle=False,
            augment=False,
            seed=0,
            channels_last=config.channels_last,
        )
        for s in ("val", "test")
        if len(tensors[s][1])  # an empty val split is allowed (no per-epoch validation)
    }

    # --- model and optimizer -------------------------------------------------------------------
    model = create_model(
        config.model, num_classes=len(classes), dropout=config.dropout, **config.model_args
    )
    params_trainable_total, bn_stats = count_params(model)
    macs = count_macs(model, config.resolution)
    if config.bn_momentum is not None:
        set_bn_momentum(model, config.bn_momentum)
    if not config.inplace_act:
        set_inplace_activations(model, False)
    init_info = load_init_weights(model, config.init) if config.init else None
    frozen = apply_train_scope(model, config.train_scope)
    if config.memory_budget_mb and not (run_dir / PLAN).exists():
        config, _ = _plan(config, model, len(classes), sampler, run_dir, log, progress)
    if config.checkpointing:
        enable_checkpointing(model)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = _make_optimizer(trainable, config)

    history: list[dict[str, Any]] = []
    start_epoch = 0
    best_val = -1.0
    if state is not None:
        load_plain_state_dict(model, state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_torch"])
        history = state["history"]
        start_epoch = int(state["epoch"])
        best_val = float(state.get("best_val_accuracy", -1.0))
        log(f"resuming {run_dir} after epoch {start_epoch}")

    _release_freed_memory()
    baseline_rss_mb = sampler.sample_now() / MB  # model built, data cached, before the first step
    sampler.mark("baseline")
    # the kernel's high-water mark catches spikes between two samples; restart it per epoch
    hwm_ok = reset_peak_rss()

    # --- the loop ------------------------------------------------------------------------------
    micro = config.micro_batch or config.batch_size
    budget_bytes = int(config.memory_budget_mb * MB) if config.memory_budget_mb else None
    step_ms: list[float] = []
    footprint: dict[str, float] | None = None
    bar = TrainProgress(enabled=progress, epochs=config.epochs, steps=len(train_loader))
    with bar:
        for epoch in range(start_epoch, config.epochs):
            set_train_mode(model, frozen)
            t_epoch = time.perf_counter()
            mark = sampler.mark(f"epoch {epoch + 1}")
            loss_sum, correct, seen = 0.0, 0, 0
            bar.start_epoch(epoch)
            for step, (x, y) in enumerate(train_loader.epoch(epoch)):
                t0 = time.perf_counter()
                counter = SavedTensorsCounter(exclude=model) if footprint is None else None
                loss, n_correct = _train_step(
                    model, optimizer, x, y, micro, config.precision, counter
                )
                dt_ms = (time.perf_counter() - t0) * 1e3
                if not math.isfinite(loss):
                    raise _diverged(run_dir, epoch, step, len(train_loader), loss, history)
                if counter is not None:
                    footprint = footprint_from(model, optimizer, counter).to_dict()
                if budget_bytes is not None:
                    rss = max(sampler.last_bytes, peak_rss_bytes() if hwm_ok else 0)
                    if rss > budget_bytes:
                        raise _over_budget(
                            run_dir, model, optimizer, epoch, step, rss, budget_bytes, history
                        )
                step_ms.append(dt_ms)
                loss_sum += loss * len(y)
                correct += n_correct
                seen += len(y)
                bar.step(
                    loss=loss_sum / seen,
                    acc=correct / seen,
                    img_s=len(y) / dt_ms * 1e3,
                    rss_mb=sampler.last_bytes / MB,
                )
            epoch_s = time.perf_counter() - t_epoch
            window = sampler.window(mark)
            hwm_mb = peak_rss_bytes() / MB if hwm_ok else None
            val = _evaluate(model, eval_loaders.get("val"), len(classes), config)
            row = {
                "epoch": epoch + 1,
                "train_loss": loss_sum / max(seen, 1),
                "train_accuracy": correct / max(seen, 1),
                "val_loss": val["loss"] if val else None,
                "val_accuracy": val["accuracy"] if val else None,
                "val_macro_f1": val["macro_f1"] if val else None,
                "epoch_s": epoch_s,
                "train_images_per_s": seen / epoch_s,
                "peak_rss_mb": max(window.peak_bytes / MB, hwm_mb or 0.0),
                "sampled_peak_rss_mb": window.peak_bytes / MB,
                "mean_rss_mb": window.mean_bytes / MB,
                "baseline_rss_mb": baseline_rss_mb,
                "system_ram_permille": system_ram_permille(),
            }
            history.append(row)
            if config.select == "best-val" and val and val["accuracy"] > best_val:
                best_val = val["accuracy"]
                save_checkpoint(
                    run_dir / "best.pt", {"model": plain_state_dict(model), "epoch": epoch + 1}
                )
            save_checkpoint(
                run_dir / CHECKPOINT,
                {
                    "model": plain_state_dict(model),
                    "optimizer": optimizer.state_dict(),
                    "rng_torch": torch.get_rng_state(),
                    "epoch": epoch + 1,
                    "history": history,
                    "best_val_accuracy": best_val,
                    "classes": classes,
                    "config": config.to_dict(),
                },
            )
            write_history_csv(run_dir / HISTORY, history)
            _append_rss_trace(run_dir / RSS_TRACE, sampler, mark)
            if hwm_ok:
                reset_peak_rss()
            bar.end_epoch(row)
            log(_epoch_line(row, config.epochs))

    # --- test the selected model ----------------------------------------------------------------
    if config.select == "best-val" and (run_dir / "best.pt").is_file():
        load_plain_state_dict(model, load_checkpoint(run_dir / "best.pt")["model"])
    test = _evaluate(model, eval_loaders["test"], len(classes), config)
    lat_b1, lat_b16 = (
        inference_latency_ms(
            model,
            batch_size=b,
            resolution=config.resolution,
            channels_last=config.channels_last,
            repeat=config.latency_repeat,
        )
        for b in (1, 16)
    )
    if footprint is None:  # resumed after the last epoch: measure one step's footprint anyway
        set_train_mode(model, frozen)
        x, y = next(iter(train_loader.epoch(0)))
        with autocast_context(config.precision):
            footprint = analytic_footprint(model, optimizer, x[:micro], y[:micro]).to_dict()

    record = _assemble_record(
        config=config,
        classes=classes,
        splits=splits,
        augment=augment,
        history=history,
        step_ms=step_ms,
        footprint=footprint,
        test=test,
        lat_b1=lat_b1,
        lat_b16=lat_b16,
        params_trainable=sum(p.numel() for p in trainable),
        params_total=params_trainable_total,
        bn_stats=bn_stats,
        macs=macs,
        init_info=init_info,
        plan=_load_plan(run_dir),
        started=started,
        resumed=state is not None,
    )
    record.save(run_dir)
    try:
        from edgetrain.train.plots import plot_run

        plot_run(run_dir)
    except Exception as exc:  # a plot must never cost the user a finished run
        log(f"warning: plots not written: {exc}")
    return record


# --- one step ---------------------------------------------------------------------------------


def _train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    micro: int,
    precision: str,
    counter: Any,
) -> tuple[float, int]:
    """One optimizer step on batch (x, y), in micro-batches of `micro` images whose gradients
    accumulate; the loss is the mean over the whole batch, as without micro-batching."""
    optimizer.zero_grad(set_to_none=True)
    total_loss, n_correct, batch = 0.0, 0, len(y)
    for i, (xs, ys) in enumerate(zip(x.split(micro), y.split(micro), strict=True)):
        # only one micro-batch's graph is alive at a time: count the first one's saved tensors
        with counter if counter is not None and i == 0 else _null():
            with autocast_context(precision):
                logits = model(xs)
            # loss on logits in fp32; sum / full batch so accumulated grads equal the batch mean
            loss = F.cross_entropy(logits.float(), ys, reduction="sum") / batch
        loss.backward()
        total_loss += float(loss.detach()) * batch
        n_correct += int((logits.argmax(1) == ys).sum())
    optimizer.step()
    return total_loss / batch, n_correct


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@torch.no_grad()
def _evaluate(
    model: nn.Module, loader: BatchLoader | None, num_classes: int, config: RunConfig
) -> dict[str, Any] | None:
    if loader is None or len(loader) == 0:
        return None
    was_training = model.training
    model.eval()
    preds, targets, loss_sum = [], [], 0.0
    with autocast_context(config.precision):
        for x, y in loader.epoch(0):
            logits = model(x).float()
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            preds.append(logits.argmax(1))
            targets.append(y)
    model.train(was_training)
    p, t = torch.cat(preds), torch.cat(targets)
    cm = metrics.confusion_matrix(t, p, num_classes)
    return {
        "loss": loss_sum / len(t),
        "accuracy": metrics.accuracy(cm),
        "macro_f1": metrics.macro_f1(cm),
        "per_class_accuracy": metrics.per_class_accuracy(cm),
        "confusion": cm.tolist(),
    }


def _make_optimizer(params: list[nn.Parameter], config: RunConfig) -> torch.optim.Optimizer:
    if not params:
        raise EdgeTrainError("nothing to train: the train scope froze every parameter")
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


# --- memory accounting ------------------------------------------------------------------------


def _append_rss_trace(path: Path, sampler: RssSampler, mark: Any) -> None:
    new = not path.exists()
    with path.open("a") as f:
        if new:
            f.write("t_s,rss_mb,epoch\n")
        epoch = mark.label.split()[-1]
        for t, b in zip(*sampler.samples_since(mark), strict=True):
            f.write(f"{t:.3f},{b / MB:.2f},{epoch}\n")


def _diverged(
    run_dir: Path, epoch: int, step: int, steps: int, loss: float, history: list[dict[str, Any]]
) -> TrainingDiverged:
    last = (
        f"{run_dir / CHECKPOINT} (after epoch {history[-1]['epoch']})"
        if history and (run_dir / CHECKPOINT).exists()
        else "none (it diverged in the first epoch)"
    )
    return TrainingDiverged(
        f"loss became {loss} at epoch {epoch + 1}, step {step + 1}/{steps}; training stopped. "
        f"Last good checkpoint: {last}. Try a lower --lr."
    )


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    val = f" val_acc {row['val_accuracy']:.3f}" if row["val_accuracy"] is not None else ""
    return (
        f"epoch {row['epoch']}/{epochs} loss {row['train_loss']:.4f} "
        f"acc {row['train_accuracy']:.3f}{val} {row['epoch_s']:.1f}s "
        f"{row['train_images_per_s']:.1f} img/s peak_rss {row['peak_rss_mb']:.0f} MB"
    )


# --- the record -------------------------------------------------------------------------------


def _assemble_record(
    *,
    config,
    classes,
    splits,
    augment,
    history,
    step_ms,
    footprint,
    test,
    lat_b1,
    lat_b16,
    params_trainable,
    params_total,
    bn_stats,
    macs,
    init_info,
    plan,
    started,
    resumed,
) -> RunRecord:
    peak_rss = max(r["peak_rss_mb"] for r in history)
    # each process segment has its own baseline; the peak above baseline is per segment
    peak_above = max(r["peak_rss_mb"] - r["baseline_rss_mb"] for r in history)
    total_s = sum(r["epoch_s"] for r in history)
    mean_rss = sum(r["mean_rss_mb"] * r["epoch_s"] for r in history) / total_s
    steady = step_ms[WARMUP_STEPS:] or step_ms
    step_med = statistics.median(steady) if steady else None
    permille = [r["system_ram_permille"] for r in history]
    return RunRecord(
        status="finished",
        run_id=config.id,
        edgetrain_version=__version__,
        started=started,
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
        resumed=resumed,
        model=config.model,
        data=config.data,
        classes=classes,
        split_counts=splits.counts(),
        augment=augment,
        test_accuracy=test["accuracy"],
        test_macro_f1=test["macro_f1"],
        test_loss=test["loss"],
        test_per_class_accuracy=test["per_class_accuracy"],
        test_confusion=test["confusion"],
        val_accuracy=history[-1]["val_accuracy"],
        peak_rss_mb=peak_rss,
        mean_rss_mb=mean_rss,
        baseline_rss_mb=history[0]["baseline_rss_mb"],
        peak_above_baseline_mb=peak_above,
        # whole-process lifetime high-water mark (decoding included; Linux carries a parent's
        # value across exec, so it can exceed this run's own peak)
        ru_maxrss_mb=ru_maxrss_bytes() / MB,
        analytic_mb=footprint["total_mb"],
        analytic=footprint,
        # the baseline already holds the weights: compare with what training adds on top
        measured_over_analytic=peak_above / footprint["above_weights_mb"],
        system_ram_permille=statistics.mean(permille),
        system_ram_permille_per_epoch=permille,
        train_step_ms=step_med,
        train_images_per_s=config.batch_size / step_med * 1e3 if step_med else None,
        epoch_s=statistics.mean(r["epoch_s"] for r in history),
        total_train_s=total_s,
        infer_latency_ms_b1=lat_b1["median_ms"],
        infer_latency_ms_b16=lat_b16["median_ms"],
        params_trainable=params_trainable,
        params_total=params_total,
        bn_stats=bn_stats,
        macs=macs,
        init=init_info,
        plan=plan,
        environment=environment(),
        config=config.to_dict(),
        history=history,
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


# --- memory budget ---------------------------------------------------------------------------

PLAN = "plan.json"


def _apply_device(config: RunConfig) -> RunConfig:
    """A device profile fills in the threads and the memory budget the user did not give."""
    if not config.device:
        return config
    from edgetrain.train.planner import load_device

    dev = load_device(config.device)
    changes: dict[str, Any] = {}
    if config.threads is None:
        changes["threads"] = dev.threads
    if config.memory_budget_mb is None:
        changes["memory_budget_mb"] = dev.budget_bytes / MB
    return config.replace(**changes) if changes else config


def _plan(config, model, num_classes, sampler, run_dir, log, progress):
    from rich.console import Console

    from edgetrain.train.planner import (
        fixed_training_bytes,
        make_plan,
        print_plan,
        probe_in_subprocess,
    )

    probes, single_ok = probe_in_subprocess(
        {
            "model": config.model,
            "model_args": config.model_args,
            "num_classes": num_classes,
            "resolution": config.resolution,
            "train_scope": config.train_scope,
            "channels_last": config.channels_last,
            "precisions": [config.precision],
            "inplace_act": config.inplace_act,
            "threads": config.threads,
        }
    )
    _release_freed_memory()
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    plan = make_plan(
        probes,
        budget_bytes=int(config.memory_budget_mb * MB),
        baseline_bytes=sampler.sample_now(),
        batch_size=config.batch_size,
        fixed_bytes=fixed_training_bytes(trainable, config.optimizer, config.momentum),
        min_micro_batch=1 if single_ok else 2,
    )
    c = plan.chosen
    config = config.replace(
        micro_batch=c.micro_batch if c.micro_batch < config.batch_size else None,
        checkpointing=c.checkpointing or config.checkpointing,
        precision=c.precision,
    )
    atomic_write_text(run_dir / CONFIG, json.dumps(config.to_dict(), indent=2) + "\n")
    atomic_write_text(run_dir / PLAN, json.dumps(plan.to_dict(), indent=2) + "\n")
    if progress:
        print_plan(plan, Console(stderr=True))
    log(
        f"memory plan: {c.label()}, predicted peak {c.predicted_peak_mb:.0f} MB "
        f"of a {plan.budget_mb:.0f} MB budget"
    )
    return config, plan


def _load_plan(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / PLAN
    return json.loads(path.read_text()) if path.exists() else None


def _over_budget(run_dir, model, optimizer, epoch, step, rss, budget, history):
    save_checkpoint(
        run_dir / "stopped.pt",
        {
            "model": plain_state_dict(model),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "step": step + 1,
        },
    )
    last = (
        f"{run_dir / CHECKPOINT} holds the last finished epoch ({history[-1]['epoch']}); "
        if history
        else ""
    )
    return MemoryBudgetExceeded(
        f"memory budget exceeded: RSS reached {rss / MB:.0f} MB of a {budget / MB:.0f} MB budget "
        f"at epoch {epoch + 1}, step {step + 1}; training stopped. {last}the state at the stop "
        f"is in {run_dir / 'stopped.pt'}. The settings in {run_dir / CONFIG} needed more than "
        "that: give a larger budget, or a smaller --micro-batch / --checkpointing."
    )


# --- run directories --------------------------------------------------------------------------


def _claim_run_dir(run_dir: Path, config: RunConfig) -> None:
    """Create `run_dir` for a new run; refuse to overwrite another run's results."""
    if (run_dir / CHECKPOINT).exists() or (run_dir / "record.json").exists():
        raise EdgeTrainError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose "
            "another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG, json.dumps(config.to_dict(), indent=2) + "\n")


def _load_for_resume(run_dir: Path) -> tuple[RunConfig, dict[str, Any] | None]:
    if not (run_dir / CONFIG).is_file():
        raise EdgeTrainError(f"{run_dir} is not a run directory (no {CONFIG}); nothing to resume")
    try:
        config = RunConfig.from_dict(json.loads((run_dir / CONFIG).read_text()))
    except json.JSONDecodeError as exc:
        raise EdgeTrainError(f"{run_dir / CONFIG} is not valid JSON: {exc}") from None
    state = load_checkpoint(run_dir / CHECKPOINT) if (run_dir / CHECKPOINT).exists() else None
    return config, state
