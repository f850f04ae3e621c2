"""Training within a memory budget: predict each setting's peak RSS, pick the fastest that fits.

The prediction is made inside the training process, with the model built and the data loaded:

    predicted peak RSS = baseline RSS (measured now)
                         + OVERHEAD x (gradients + optimizer state + saved activations(m)
                                       + recomputed block(m) when checkpointing
                                       + the optimizer step's temporaries)

where the saved activations of one micro-batch of m images are measured, not guessed: one real
forward pass at m = 1 and m = 2 under `saved_tensors_hooks` gives a + b*m per setting (precision
and checkpointing included), and the same passes time the step, t(m) = c + d*m, so the planner
can rank settings by their predicted time per effective batch. OVERHEAD covers the allocator and
the gradient buffers that flow through backward; benchmarks/memory_modes.py measures it.
"""

from __future__ import annotations

import copy
import re
import statistics
import time
import tomllib
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgetrain.errors import EdgeTrainError
from edgetrain.measure import MB, SavedTensorsCounter, StorageSet
from edgetrain.train.modes import autocast_context, enable_checkpointing

OVERHEAD = 1.2  # measured peak above baseline / analytic training footprint, see the docstring

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]i?[bB]?|[bB])?\s*$")
_UNITS = {
    "b": 1,
    "k": 1e3,
    "kb": 1e3,
    "kib": 2**10,
    "m": 1e6,
    "mb": 1e6,
    "mib": 2**20,
    "g": 1e9,
    "gb": 1e9,
    "gib": 2**30,
    "t": 1e12,
    "tb": 1e12,
    "tib": 2**40,
}


def parse_size(text: str | float | int) -> int:
    """'1.5GB' -> bytes (GB = 10^9, GiB = 2^30, MB = 10^6, MiB = 2^20; a bare number is MiB)."""
    if isinstance(text, int | float):
        return int(text * MB)
    m = _SIZE.match(str(text))
    if not m:
        raise EdgeTrainError(f"not a memory size: {text!r} (use e.g. 1.5GB, 1GiB, 800MB)")
    value, unit = float(m.group(1)), (m.group(2) or "mib").lower()
    if unit not in _UNITS:
        raise EdgeTrainError(f"unknown size unit in {text!r}")
    n = int(value * _UNITS[unit])
    if n <= 0:
        raise EdgeTrainError(f"a memory budget must be positive, got {text!r}")
    return n


# --- device profiles ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    memory_bytes: int  # the device's RAM
    budget_bytes: int  # what the training process may use (whole-process peak RSS)
    threads: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def shipped_devices() -> list[str]:
    files = resources.files("edgetrain") / "devices"
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def load_device(name_or_path: str) -> DeviceProfile:
    """A shipped profile by name, or a user's TOML file with name, memory, budget, threads."""
    path = Path(name_or_path)
    if path.suffix == ".toml":
        if not path.is_file():
            raise EdgeTrainError(f"no device profile file {path}")
        text = path.read_text()
    elif name_or_path in shipped_devices():
        text = (resources.files("edgetrain") / "devices" / f"{name_or_path}.toml").read_text()
    else:
        raise EdgeTrainError(
            f"unknown device {name_or_path!r}; shipped: {', '.join(shipped_devices())} "
            "(or a path to your own .toml with name, memory, budget, threads)"
        )
    try:
        raw = tomllib.loads(text)
        return DeviceProfile(
            name=str(raw.get("name", path.stem)),
            description=str(raw.get("description", "")),
            memory_bytes=parse_size(raw["memory"]),
            budget_bytes=parse_size(raw.get("budget", raw["memory"])),
            threads=int(raw["threads"]),
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise EdgeTrainError(f"bad device profile {name_or_path}: {exc!r}") from None


# --- probing one setting ------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """Measured at two micro-batch sizes for one (checkpointing, precision) setting."""

    checkpointing: bool
    precision: str
    sizes: tuple[int, int]  # the micro-batch sizes probed: (1, 2), or (2, 4) where 1 cannot train
    saved_bytes: tuple[int, int]  # saved for backward at those sizes
    block_bytes: tuple[int, int]  # the largest backbone block's own saved bytes
    step_s: tuple[float, float]  # forward + backward time

    def saved_at(self, m: int) -> float:
        return self._linear(self.saved_bytes, m)

    def block_at(self, m: int) -> float:
        return self._linear(self.block_bytes, m)

    def step_s_at(self, m: int) -> float:
        return self._linear(self.step_s, m)

    def _linear(self, at: tuple[float, float], m: int) -> float:
        (m1, m2), (v1, v2) = self.sizes, at
        slope = max((v2 - v1) / (m2 - m1), 0.0)
        return max(v1 - slope * m1, 0.0) + slope * m


class _BlockSaved:
    """Saved-for-backward bytes attributed to the backbone block that was running."""

    def __init__(self, model: nn.Module) -> None:
        self.current: str | None = None
        self.per_block: dict[str, StorageSet] = {}
        self._params = StorageSet([*model.parameters(), *model.buffers()])
        self._handles = []
        for name, block in model.backbone.named_children():
            self._handles.append(block.register_forward_pre_hook(self._enter(name)))
            self._handles.append(block.register_forward_hook(self._leave))

    def _enter(self, name: str):
        def hook(*_: Any) -> None:
            self.current = name

        return hook

    def _leave(self, *_: Any) -> None:
        self.current = None

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        if self.current is not None and t not in self._params:
            self.per_block.setdefault(self.current, StorageSet()).add(t)
        return t

    def largest(self) -> int:
        return max((s.nbytes for s in self.per_block.values()), default=0)

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def _probe(
    base: nn.Module,
    *,
    checkpointing: bool,
    precision: str,
    channels_last: bool,
    x: torch.Tensor,
    y: torch.Tensor,
    sizes: tuple[int, int],
    repeat: int = 3,
) -> Probe:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    saved, blocks, times = [], [], []
    for m in sizes:
        model = copy.deepcopy(base)
        if checkpointing:
            enable_checkpointing(model)
        model = model.to(memory_format=fmt).train()
        xs, ys = x[:m].to(memory_format=fmt), y[:m]
        # what one training step saves for backward, with the mode on
        counter = SavedTensorsCounter(exclude=model)
        with counter, autocast_context(precision):
            loss = F.cross_entropy(model(xs).float(), ys)
        loss.backward()
        saved.append(counter.saved_bytes)
        del loss
        # the largest block's own activations: recomputed at once in backward when checkpointing
        plain = copy.deepcopy(base).to(memory_format=fmt).train()
        attribution = _BlockSaved(plain)
        hooks = torch.autograd.graph.saved_tensors_hooks(attribution.pack, lambda t: t)
        with hooks, autocast_context(precision):
            out = plain(xs)
        attribution.close()
        blocks.append(attribution.largest())
        del out, plain
        ts = []
        for _ in range(repeat + 2):  # the first calls warm up the kernels and the allocator
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            with autocast_context(precision):
                loss = F.cross_entropy(model(xs).float(), ys)
            loss.backward()
            ts.append(time.perf_counter() - t0)
        times.append(statistics.median(ts[2:]))
        del model, loss
    return Probe(
        checkpointing,
        precision,
        sizes,
        (saved[0], saved[1]),
        (blocks[0], blocks[1]),
        (times[0], times[1]),
    )


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget_mb": self.budget_mb,
            "baseline_mb": self.baseline_mb,
            "fixed_mb": self.fixed_mb,
            "overhead_factor": OVERHEAD,
            "chosen": asdict(self.chosen),
            "candidates": [asdict(c) for c in self.candidates],
        }


def _divisors(n: int) -> list[int]:
    return [d for d in range(n, 0, -1) if n % d == 0]


def probe_settings(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    channels_last: bool,
    precisions: tuple[str, ...],
    allow_checkpointing: bool = True,
) -> list[Probe]:
    """Probe every (checkpointing, precision) setting on `model` with images x (>= 4) and labels y.

    Micro-batches of 2 and 4 are probed (timings at 1 image are mostly fixed overheads); where
    a micro-batch of 1 cannot train (a BatchNorm over a 1x1 feature map sees one value per
    channel) the plan leaves it out.
    """
    if len(x) < 4:
        raise EdgeTrainError("the memory planner needs at least 4 training images")
    return [
        _probe(
            model,
            checkpointing=ck,
            precision=pr,
            channels_last=channels_last,
            x=x,
            y=y,
            sizes=(2, 4),
        )
        for pr in precisions
        for ck in ((False, True) if allow_checkpointing else (False,))
    ]


def can_train_single_image(model: nn.Module, x: torch.Tensor) -> bool:
    try:
        with torch.no_grad():
            copy.deepcopy(model).train()(x[:1])
    except ValueError:
        return False
    return True


def fixed_training_bytes(trainable_bytes: int, optimizer: str, momentum: float) -> int:
    """Memory a training step needs whatever the batch: gradients, optimizer state, and the
    optimizer step's temporaries (Adam's multi-tensor update allocates about two parameter-sized
    buffers while it runs; SGD with momentum one)."""
    if optimizer == "adam":
        states, temps = 2, 2
    else:
        states, temps = (1, 1) if momentum else (0, 0)
    return trainable_bytes * (1 + states + temps)


def make_plan(
    probes: list[Probe],
    *,
    budget_bytes: int,
    baseline_bytes: int,
    batch_size: int,
    fixed_bytes: int,
    min_micro_batch: int = 1,
) -> Plan:
    """Predict every (micro-batch, checkpointing, precision) candidate's peak RSS and step time
    from the probes, and pick the fastest predicted to fit the budget; refuse if none does.

    With checkpointing, backward recomputes one block at a time, so the largest block's
    activations come on top of what is saved (counting them twice, for their gradients too,
    over-predicted xception_lite's checkpointed peak by 27 % in benchmarks/memory_modes.py).
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
    fitting = [c for c in candidates if c.fits]
    if not fitting:
        best = min(candidates, key=lambda c: c.predicted_peak_mb)
        raise EdgeTrainError(
            f"nothing fits a budget of {budget_bytes / MB:.0f} MB: the process already holds "
            f"{baseline_bytes / MB:.0f} MB (model, data, runtime) and the leanest setting "
            f"({best.label()}) is predicted to peak at {best.predicted_peak_mb:.0f} MB. Use a "
            "smaller model, resolution or dataset, a lower --train-scope, or a larger budget."
        )
    return Plan(
        budget_bytes / MB, baseline_bytes / MB, fixed_bytes / MB, fitting[0], tuple(candidates)
    )


# --- probing in a fresh process -------------------------------------------------------------------


def probe_in_subprocess(spec: dict[str, Any]) -> tuple[list[Probe], bool]:
    """Run the probes in a fresh Python process, so the memory they touch never stays in the
    training process (freed heap is not always returned to the OS). `spec` holds model,
    model_args, num_classes, resolution, train_scope, channels_last, precisions, inplace_act.
    Returns the probes and whether a micro-batch of 1 can train."""
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "edgetrain.train.planner", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise EdgeTrainError("the memory planner's probe failed: " + " | ".join(tail))
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    probes = [
        Probe(
            d["checkpointing"],
            d["precision"],
            tuple(d["sizes"]),
            tuple(d["saved_bytes"]),
            tuple(d["block_bytes"]),
            tuple(d["step_s"]),
        )
        for d in out["probes"]
    ]
    return probes, bool(out["single_image_ok"])


def _probe_main(spec: dict[str, Any]) -> dict[str, Any]:
    from edgetrain.models import create_model
    from edgetrain.train.modes import apply_train_scope, set_inplace_activations

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    torch.manual_seed(0)
    model = create_model(spec["model"], num_classes=spec["num_classes"], **spec["model_args"])
    apply_train_scope(model, spec["train_scope"])
    if not spec.get("inplace_act", True):
        set_inplace_activations(model, False)
    r = spec["resolution"]
    x = torch.randn(4, 3, r, r)
    y = torch.arange(4) % spec["num_classes"]
    probes = probe_settings(
        model, x, y, channels_last=spec["channels_last"], precisions=tuple(spec["precisions"])
    )
    return {
        "probes": [asdict(p) for p in probes],
        "single_image_ok": can_train_single_image(model, x),
    }


def print_plan(plan: Plan, console: Any, *, limit: int = 12) -> None:
    """A table of the candidates (fastest first), the chosen one marked."""
    from rich.table import Table

    table = Table(
        title=f"memory plan: budget {plan.budget_mb:.0f} MB, baseline {plan.baseline_mb:.0f} MB "
        f"(model, data, runtime), gradients + optimizer {plan.fixed_mb:.0f} MB",
        title_justify="left",
    )
    for col in ("setting", "predicted peak MB", "predicted step s", "fits"):
        table.add_column(col, justify="left" if col == "setting" else "right")
    for c in plan.candidates[:limit]:
        mark = " (chosen)" if c == plan.chosen else ""
        style = "bold green" if c == plan.chosen else (None if c.fits else "dim")
        table.add_row(
            c.label() + mark,
            f"{c.predicted_peak_mb:.0f}",
            f"{c.predicted_step_s:.2f}",
            "yes" if c.fits else "no",
            style=style,
        )
    console.print(table)


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(_probe_main(json.loads(sys.argv[1]))))
