"""Training within a memory budget: predict each setting's peak RSS, pick the fastest that fits.

    predicted peak RSS = baseline RSS (measured in the training process, model and data ready)
                         + OVERHEAD x (gradients + optimizer state + saved activations(m)
                                       + recomputed block(m) when checkpointing
                                       + the optimizer step's temporaries)

The saved activations of one micro-batch of m images are measured by the probes (`probe.py`),
not guessed, and so are the step times, so the planner can rank settings by their predicted time
per effective batch. OVERHEAD covers the allocator and the gradient buffers that flow through
backward; benchmarks/memory_modes.py measures it. Printing a plan is in `show.py`, device
profiles in `devices.py`, size parsing in `edgetrain.measure.units`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgetrain.errors import EdgeTrainError
from edgetrain.measure import MB
from edgetrain.train.probe import Probe

OVERHEAD = 1.2  # measured peak above baseline / analytic training footprint, see the docstring


# --- the plan -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    micro_batch: int
    checkpointing: bool
    precision: str
    predicted_peak_mb: float
    predicted_step_s: float  # one optimizer step over the effective batch
    fits: bool

    def label(self) -> str:
        parts = [f"micro-batch {self.micro_batch}"]
        if self.checkpointing:
            parts.append("checkpointing")
        if self.precision != "fp32":
            parts.append(self.precision)
        return ", ".join(parts)


@dataclass(frozen=True)
class Plan:
    budget_mb: float
    baseline_mb: float
    fixed_mb: float  # gradients, optimizer state and its step's temporaries
    chosen: Candidate
    candidates: tuple[Candidate, ...]
    # the settings asked for before planning (micro_batch, checkpointing, precision), so that a
    # resumed run with a new budget plans again from them rather than from this plan's choice
    requested: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "budget_mb": self.budget_mb,
            "baseline_mb": self.baseline_mb,
            "fixed_mb": self.fixed_mb,
            "overhead_factor": OVERHEAD,
            "chosen": asdict(self.chosen),
            "candidates": [asdict(c) for c in self.candidates],
        }


def _divisors(n: int) -> list[int]:
    return [d for d in range(n, 0, -1) if n % d == 0]


def fixed_training_bytes(
    trainable_bytes: int, optimizer: str, momentum: float, ema_bytes: int = 0
) -> int:
    """Memory a training step needs whatever the batch: gradients, optimizer state, and the
    optimizer step's temporaries (Adam's multi-tensor update allocates about two parameter-sized
    buffers while it runs; SGD with momentum one), plus the weight EMA's copy of the model's
    state (`ema_bytes`, 0 without an EMA)."""
    if optimizer == "adam":
        states, temps = 2, 2
    else:
        states, temps = (1, 1) if momentum else (0, 0)
    return trainable_bytes * (1 + states + temps) + ema_bytes


def _worth_choosing(fitting: list[Candidate]) -> list[Candidate]:
    """Checkpointing recomputes the forward pass, so it is never faster than the same micro-batch
    and precision without it, whatever the probes' timing noise says: keep it only where that
    setting does not fit (the probes' noise once picked checkpointing under a roomy budget)."""
    plain = {(c.micro_batch, c.precision) for c in fitting if not c.checkpointing}
    return [c for c in fitting if not (c.checkpointing and (c.micro_batch, c.precision) in plain)]


def make_plan(
    probes: list[Probe],
    *,
    budget_bytes: int,
    baseline_bytes: int,
    batch_size: int,
    fixed_bytes: int,
    min_micro_batch: int = 1,
    baseline_is: str = "model, data, runtime",
) -> Plan:
    """Predict every (micro-batch, checkpointing, precision) candidate's peak RSS and step time
    from the probes, and pick the fastest predicted to fit the budget; refuse if none does.

    With checkpointing, backward recomputes one block at a time, so the largest block's
    activations come on top of what is saved (counting them twice, for their gradients too,
    over-predicted xception_lite's checkpointed peak by 27 % in benchmarks/memory_modes.py).
    `baseline_is` says what the baseline holds, for the message when nothing fits.
    """
    candidates = []
    for p in probes:
        for m in _divisors(batch_size):
            if m < min_micro_batch:
                continue
            extra = fixed_bytes + p.saved_at(m) + (p.block_at(m) if p.checkpointing else 0.0)
            peak = baseline_bytes + OVERHEAD * extra
            step = (batch_size / m) * p.step_s_at(m)
            candidates.append(
                Candidate(m, p.checkpointing, p.precision, peak / MB, step, peak <= budget_bytes)
            )
    candidates.sort(key=lambda c: c.predicted_step_s)
    fitting = _worth_choosing([c for c in candidates if c.fits])
    if not fitting:
        best = min(candidates, key=lambda c: c.predicted_peak_mb)
        raise EdgeTrainError(
            f"nothing fits a budget of {budget_bytes / MB:.0f} MB: the process holds "
            f"{baseline_bytes / MB:.0f} MB ({baseline_is}) and the leanest setting "
            f"({best.label()}) is predicted to peak at {best.predicted_peak_mb:.0f} MB. Use a "
            "smaller model, resolution or dataset, a lower --train-scope, or a larger budget."
        )
    return Plan(
        budget_bytes / MB, baseline_bytes / MB, fixed_bytes / MB, fitting[0], tuple(candidates)
    )
