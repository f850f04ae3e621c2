"""Feasibility before training: a genome's peak training memory, params and MACs, predicted in
seconds by the memory planner's probe (one real forward + backward per setting, in a fresh
process) and its plan (the fastest micro-batch / checkpointing setting predicted to fit).

The planner predicts what training adds above the process's baseline; the baseline itself (the
runtime, the weights, the decoded data) is predicted as the probe process's RSS with the model
built plus the decoded images' bytes, corrected by what finished trials measured
(`BaselineModel`). A genome is feasible when some plan's predicted whole-process peak fits the
budget; the planner's choice, not a gene, decides how it then trains.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from edgetrain.errors import EdgeTrainError
from edgetrain.measure import MB
from edgetrain.train.config import RunConfig
from edgetrain.train.planner import fixed_training_bytes, make_plan
from edgetrain.train.probe import probe_facts


@dataclass(frozen=True)
class Prediction:
    feasible: bool
    predicted_peak_mb: float  # whole process, the chosen (or the leanest) plan
    predicted_above_baseline_mb: float
    predicted_baseline_mb: float
    predicted_step_s: float
    params: int
    macs: int
    plan: str  # the chosen setting, e.g. "micro-batch 16", or the leanest one when infeasible
    seconds: float  # how long the prediction took

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BaselineModel:
    """Baseline RSS = probe RSS (runtime + weights) + decoded data + an offset learned from
    finished trials (the median of measured minus predicted: imports and buffers the probe
    process does not have)."""

    data_mb: float  # the decoded train/val/test images (uint8)
    offsets_mb: list[float] = field(default_factory=list)

    def predict(self, model_rss_mb: float) -> float:
        offset = statistics.median(self.offsets_mb) if self.offsets_mb else 0.0
        return model_rss_mb + self.data_mb + offset

    def learn(self, model_rss_mb: float, measured_baseline_mb: float) -> None:
        self.offsets_mb.append(measured_baseline_mb - model_rss_mb - self.data_mb)


def predict(
    config: RunConfig, num_classes: int, budget_mb: float, baseline: BaselineModel
) -> tuple[Prediction, float]:
    """The prediction for `config` (its model, resolution, batch) and the probe's model RSS (MB,
    for `BaselineModel.learn` once the trial has measured its baseline)."""
    import time

    t0 = time.perf_counter()
    # precision auto is decided by timing once a genome fits; bf16 needs less memory than fp32,
    # so a prediction in fp32 is an upper bound whatever auto then chooses
    precision = "fp32" if config.precision == "auto" else config.precision
    facts = probe_facts(config.replace(precision=precision), num_classes, (precision,))
    model_rss_mb = facts["model_rss_bytes"] / MB
    baseline_mb = baseline.predict(model_rss_mb)
    kwargs = dict(
        baseline_bytes=int(baseline_mb * MB),
        batch_size=config.batch_size,
        fixed_bytes=fixed_training_bytes(
            facts["trainable_bytes"],
            config.optimizer,
            config.momentum,
            # a search trains every parameter: the EMA copies about the trainable bytes
            ema_bytes=facts["trainable_bytes"] if config.ema_decay else 0,
        ),
        min_micro_batch=1 if facts["single_image_ok"] else 2,
    )
    try:
        chosen = make_plan(facts["probes"], budget_bytes=int(budget_mb * MB), **kwargs).chosen
        feasible = True
    except EdgeTrainError:  # nothing fits: keep the leanest candidate as the prediction
        plan = make_plan(facts["probes"], budget_bytes=2**62, **kwargs)
        chosen = min(plan.candidates, key=lambda c: c.predicted_peak_mb)
        feasible = False
    prediction = Prediction(
        feasible=feasible,
        predicted_peak_mb=chosen.predicted_peak_mb,
        predicted_above_baseline_mb=chosen.predicted_peak_mb - baseline_mb,
        predicted_baseline_mb=baseline_mb,
        predicted_step_s=chosen.predicted_step_s,
        params=int(facts["params"]),
        macs=int(facts["macs"]),
        plan=chosen.label(),
        seconds=time.perf_counter() - t0,
    )
    return prediction, model_rss_mb


def data_bytes(counts: dict[str, int], resolution: int) -> int:
    """The decoded images a run holds: uint8, 3 x R x R each, every split."""
    return sum(counts.values()) * 3 * resolution * resolution
