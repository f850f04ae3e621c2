"""The analytic training footprint: what one training step must hold in memory, from the actual
tensors.

    footprint = weights (parameters + buffers)
              + gradients (one per trainable parameter)
              + optimizer state (the tensors in optimizer.state)
              + bytes saved for backward (every tensor autograd keeps from forward to backward)

Sizes are real storage sizes (`untyped_storage().nbytes()`), each storage counted once: a view
keeps its whole storage alive, so a saved slice of a big tensor costs the big tensor, and two
saved tensors sharing a storage (a ReLU's output that the next Linear also saves) cost it once.
Saved tensors whose storage is a parameter or buffer (a Linear's weight, BatchNorm's running
stats) are already counted as weights; they are left out of the saved bytes and reported apart.

What it does not count: the framework itself (libtorch, Python, oneDNN caches), the data pipeline,
the transient gradient-of-activation buffers of backward, optimizer temporaries, and allocator
slack. With a baseline RSS taken after the model is built (weights already resident), peak RSS
above the baseline minus `Footprint.above_weights_bytes` is that overhead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgetrain.measure.units import MB

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------
# Storage accounting


def _storage_key_and_nbytes(t: torch.Tensor) -> tuple[Any, int]:
    try:
        s = t.untyped_storage()
    except (RuntimeError, NotImplementedError):
        # Storage-less layouts (sparse, mkldnn opaque tensors): their own element bytes, keyed by
        # the tensor object (callers hold a reference, so the id cannot be reused meanwhile).
        return ("tensor", id(t)), t.numel() * t.element_size()
    ptr = s.data_ptr()
    if ptr == 0:
        # meta / fake tensors have no address (and empty storages don't matter): key by the
        # storage object itself so distinct storages stay distinct.
        return ("storage", s._cdata), s.nbytes()
    return (t.device.type, t.device.index, ptr), s.nbytes()


class StorageSet:
    """A set of tensor storages and their total bytes, each storage counted once however many
    tensors or views refer to it."""

    def __init__(self, tensors: Iterable[torch.Tensor] = ()) -> None:
        self._nbytes: dict[Any, int] = {}
        for t in tensors:
            self.add(t)

    def add(self, t: torch.Tensor) -> bool:
        """Add `t`'s storage; returns False if that storage was already in the set."""
        key, nbytes = _storage_key_and_nbytes(t)
        if key in self._nbytes:
            return False
        self._nbytes[key] = nbytes
        return True

    def __contains__(self, t: torch.Tensor) -> bool:
        return _storage_key_and_nbytes(t)[0] in self._nbytes

    def __len__(self) -> int:
        return len(self._nbytes)

    @property
    def nbytes(self) -> int:
        return sum(self._nbytes.values())


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Total bytes of the distinct storages behind `tensors` (views and aliases counted once)."""
    return StorageSet(tensors).nbytes


def weights_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers (BatchNorm running stats included), each storage
    once, so tied weights count once."""
    return storage_bytes([*model.parameters(), *model.buffers()])


def grads_bytes(model: nn.Module) -> int:
    """Bytes of the gradients of the model's trainable parameters: the `.grad` tensors that exist
    (their storages, once each), plus a parameter-sized dense gradient for each trainable
    parameter whose `.grad` is None now (e.g. after `zero_grad()`) but will exist after backward."""
    existing = StorageSet()
    missing = 0
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            missing += p.numel() * p.element_size()
        else:
            existing.add(p.grad)
    return existing.nbytes + missing


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the tensors in `optimizer.state` (momentum buffers, Adam's moments and step
    counters, ...), each storage once, leaving out any that alias a parameter. Zero for an
    optimizer that has not taken a step yet: PyTorch creates the state lazily in the first
    `step()` (see `analytic_footprint(step=True)`)."""
    params = StorageSet(p for group in optimizer.param_groups for p in group["params"])
    state = StorageSet()
    for per_param in optimizer.state.values():
        for value in per_param.values():
            if isinstance(value, torch.Tensor) and value not in params:
                state.add(value)
    return state.nbytes


# --------------------------------------------------------------------------------------------
# Saved for backward


class SavedTensorsCounter:
    """Context manager counting the bytes autograd saves for backward while it is active.

    Wrap one training step's forward and loss in it (not the backward), then read `saved_bytes`.
    Every tensor an op saves for backward passes through `torch.autograd.graph.saved_tensors_hooks`
    and is counted by storage, once. Storages of `exclude` (a model: its parameters and buffers;
    or tensors) go to `excluded_bytes` instead. The hooks hand each tensor back unchanged, so the
    step computes exactly what it would without the counter. While active, the counter keeps a
    reference to each saved tensor, so no storage can be freed and its address reused by another
    (which would merge two storages in the count); on exit it drops them. That is also why the
    backward belongs outside: inside, it would keep freed activations alive and raise the peak.
    One counter counts one forward (entering it again raises).

    Inner `saved_tensors_hooks` take precedence: with non-reentrant activation checkpointing the
    count has the checkpointed regions' inputs (saved by the checkpoint) and not what they
    recompute during backward.
    """

    def __init__(self, exclude: nn.Module | Iterable[torch.Tensor] | None = None) -> None:
        if isinstance(exclude, nn.Module):
            exclude = [*exclude.parameters(), *exclude.buffers()]
        self._exclude = StorageSet(exclude or ())
        self._saved = StorageSet()
        self._excluded = StorageSet()
        self._alive: list[Any] = []
        self._hooks: contextlib.AbstractContextManager[Any] | None = None
        self.n_tensors = 0  # how many times autograd saved a tensor (before dedup)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self.n_tensors += 1
        if t in self._exclude:
            self._excluded.add(t)
        elif self._saved.add(t):
            self._alive.append(t)
        return t

    def __enter__(self) -> SavedTensorsCounter:
        if self._hooks is not None:
            # Entered twice, the count would mix two forwards whose graphs may or may not be alive
            # at the same time (micro-batches: not; siamese branches: yes). Make that explicit.
            raise RuntimeError(
                "a SavedTensorsCounter counts one forward; use a new one for another forward "
                "(with micro-batches, count one micro-batch: only one graph is alive at a time)"
            )
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._hooks is not None
        self._hooks.__exit__(*exc)
        self._alive.clear()

    @property
    def saved_bytes(self) -> int:
        """Bytes of the distinct storages saved for backward (excluded ones left out)."""
        return self._saved.nbytes

    @property
    def excluded_bytes(self) -> int:
        """Bytes of saved storages that belong to `exclude` (parameters and buffers)."""
        return self._excluded.nbytes

    @property
    def n_storages(self) -> int:
        return len(self._saved)


def _unpack(t: torch.Tensor) -> torch.Tensor:
    return t


# --------------------------------------------------------------------------------------------
# The footprint


@dataclass(frozen=True)
class Footprint:
    """The analytic memory footprint of one training step, in bytes; `*_mb` in MiB (`MB`)."""

    weights_bytes: int
    grads_bytes: int
    optimizer_bytes: int
    saved_activations_bytes: int
    # Saved for backward but already in weights (parameters, buffers): not in the total.
    saved_excluded_bytes: int = 0
    saved_tensors: int = 0  # tensors autograd saved, before dedup
    saved_storages: int = 0  # distinct storages counted in saved_activations_bytes
    # False when the optimizer had not stepped (its state is created lazily by the first step),
    # so its state may be missing from optimizer_bytes.
    optimizer_state_ready: bool = True

    @property
    def total_bytes(self) -> int:
        return (
            self.weights_bytes
            + self.grads_bytes
            + self.optimizer_bytes
            + self.saved_activations_bytes
        )

    @property
    def above_weights_bytes(self) -> int:
        """What training adds to a built model (gradients + optimizer state + saved): the part a
        baseline RSS taken after building the model does not contain yet. Compare peak RSS above
        such a baseline with this, not with `total_bytes`."""
        return self.total_bytes - self.weights_bytes

    @property
    def weights_mb(self) -> float:
        return self.weights_bytes / MB

    @property
    def grads_mb(self) -> float:
        return self.grads_bytes / MB

    @property
    def optimizer_mb(self) -> float:
        return self.optimizer_bytes / MB

    @property
    def saved_activations_mb(self) -> float:
        return self.saved_activations_bytes / MB

    @property
    def total_mb(self) -> float:
        return self.total_bytes / MB

    def to_dict(self) -> dict[str, float | int | bool]:
        return {
            "weights_mb": self.weights_mb,
            "grads_mb": self.grads_mb,
            "optimizer_mb": self.optimizer_mb,
            "saved_activations_mb": self.saved_activations_mb,
            "total_mb": self.total_mb,
            "above_weights_mb": self.above_weights_bytes / MB,
            "saved_excluded_mb": self.saved_excluded_bytes / MB,
            "saved_tensors": self.saved_tensors,
            "saved_storages": self.saved_storages,
            "optimizer_state_ready": self.optimizer_state_ready,
        }


def footprint_from(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    saved: SavedTensorsCounter,
    *,
    stepped: bool = True,
) -> Footprint:
    """Assemble a `Footprint` from a counter that wrapped a training step's forward, the model's
    weights and gradients, and the optimizer's state as they are now: call it after the step's
    `optimizer.step()` (`stepped=True`) and before `zero_grad()`. With `stepped=False` the
    optimizer state counts as ready only if it is non-empty (an optimizer that has stepped may
    still keep no state, e.g. SGD without momentum; only the caller knows)."""
    return Footprint(
        weights_bytes=weights_bytes(model),
        grads_bytes=grads_bytes(model),
        optimizer_bytes=optimizer_state_bytes(optimizer),
        saved_activations_bytes=saved.saved_bytes,
        saved_excluded_bytes=saved.excluded_bytes,
        saved_tensors=saved.n_tensors,
        saved_storages=saved.n_storages,
        optimizer_state_ready=stepped or len(optimizer.state) > 0,
    )


@contextlib.contextmanager
def _restoring_rng_and_buffers(model: nn.Module, *, enabled: bool) -> Iterator[None]:
    """Put the CPU RNG (dropout draws from it) and the buffers (BatchNorm's running stats and
    batch counter, updated by a train-mode forward) back as they were on exit."""
    if not enabled:
        yield
        return
    rng = torch.get_rng_state()
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        torch.set_rng_state(rng)
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)


def analytic_footprint(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: LossFn = F.cross_entropy,
    *,
    step: bool = False,
) -> Footprint:
    """Run one forward + backward of `loss_fn(model(inputs), targets)` and return its footprint.

    The model runs in its current mode (call `model.train()` first for a training step: eval-mode
    BatchNorm and dropout save different tensors). With `step=False` (default) the call leaves no
    trace: gradients are put back as they were, and the RNG and buffers are restored; the optimizer
    state is counted as it is, so on an optimizer that has not stepped yet it is 0 and
    `optimizer_state_ready` is False. With `step=True` it is one real training step: it also calls
    `optimizer.step()` (changing the weights, the buffers, the RNG and creating the optimizer
    state, which is then counted); gradients are still put back as they were. Inside a training
    loop, `SavedTensorsCounter` + `footprint_from` measure the loop's own first step instead.

    It also works on the meta device (model, inputs and targets `.to("meta")`): shapes without
    memory or compute, e.g. for a large model at 224 px. For the CNNs checked that gives the same
    bytes as on the CPU; ops whose CPU kernel saves different tensors (fused attention) differ.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    old_grads = [p.grad for p in params]
    with _restoring_rng_and_buffers(model, enabled=not step):
        for p in params:
            p.grad = None  # fresh gradients, so the count is of this step's tensors
        try:
            with SavedTensorsCounter(model) as saved:
                loss = loss_fn(model(inputs), targets)
            loss.backward()
            del loss
            if step:
                optimizer.step()
            return footprint_from(model, optimizer, saved, stepped=step)
        finally:
            for p, g in zip(params, old_grads, strict=True):
                p.grad = g
