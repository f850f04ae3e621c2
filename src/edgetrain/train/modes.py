"""How a model is trained, apart from what: scope (which parameters learn), initial weights,
activation checkpointing, BatchNorm rates, in-place activations. Each mode is a small function
applied before training; precision lives with the compute device (accelerator.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from edgetrain.errors import EdgeTrainError
from edgetrain.train.checkpoint import load_checkpoint
from edgetrain.train.config import parse_scope
from edgetrain.train.rundir import RunDir

# --- which parameters learn -----------------------------------------------------------------


def apply_train_scope(model: nn.Module, scope: str) -> list[nn.Module]:
    """Freeze what `scope` does not train; return the modules whose BatchNorm must stay in eval
    mode (frozen statistics, as Keras does for non-trainable layers).

    all: everything; head: only the classifier; last:N: the last N backbone blocks + head;
    bias: biases, BatchNorm/LayerNorm affine parameters and the head (TinyTL-style).
    """
    kind, n = parse_scope(scope)
    frozen_modules: list[nn.Module] = []
    if kind == "all":
        for p in model.parameters():
            p.requires_grad_(True)
        return frozen_modules
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.head.parameters():
        p.requires_grad_(True)
    blocks = list(model.backbone.children())
    if kind == "head":
        frozen_modules = [model.backbone]
    elif kind == "last":
        if n > len(blocks):
            raise EdgeTrainError(
                f"train scope last:{n} asks for more blocks than {type(model).__name__} has "
                f"({len(blocks)} backbone blocks)"
            )
        for block in blocks[len(blocks) - n :]:
            for p in block.parameters():
                p.requires_grad_(True)
        frozen_modules = blocks[: len(blocks) - n]
    elif kind == "bias":
        for m in model.backbone.modules():
            if isinstance(m, nn.BatchNorm2d | nn.LayerNorm | nn.GroupNorm):
                for p in m.parameters(recurse=False):
                    p.requires_grad_(True)
            elif getattr(m, "bias", None) is not None and isinstance(m.bias, nn.Parameter):
                m.bias.requires_grad_(True)
    return frozen_modules


def set_train_mode(model: nn.Module, frozen_modules: list[nn.Module]) -> None:
    """model.train(), but frozen parts keep BatchNorm statistics fixed (eval mode)."""
    model.train()
    for m in frozen_modules:
        m.eval()


def set_bn_momentum(model: nn.Module, momentum: float) -> int:
    """Set every BatchNorm's running-statistics momentum; returns how many were changed."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.momentum = momentum
    return len(bns)


_INPLACE_TYPES = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.ELU)


def set_inplace_activations(model: nn.Module, enabled: bool) -> int:
    """Turn in-place activations off (or back on). Only those the builders made in-place are
    touched: an activation whose input is still needed (a residual) was built out-of-place and
    stays so. Returns how many modules were changed."""
    n = 0
    for m in model.modules():
        if isinstance(m, _INPLACE_TYPES):
            if not hasattr(m, "_edgetrain_inplace_safe"):
                m._edgetrain_inplace_safe = bool(m.inplace)
            if m._edgetrain_inplace_safe:
                m.inplace = enabled
                n += 1
    return n


# --- initial weights ----------------------------------------------------------------------------


def load_init_weights(model: nn.Module, source: str) -> dict[str, int]:
    """Load weights from another run (its directory or a checkpoint file) into `model`.

    A head of a different size is left freshly initialised; any other mismatch is an error.
    Returns counts of loaded and re-initialised tensors.
    """
    path = Path(source)
    if path.is_dir():
        path = RunDir(path).checkpoint  # a run directory: its last epoch's weights
    state = load_checkpoint(path)
    weights = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(weights, dict) or not all(
        isinstance(v, torch.Tensor) for v in weights.values()
    ):
        raise EdgeTrainError(f"{path} holds no model weights")
    own = model.state_dict()
    head_keys = {k for k in own if k.startswith("head.")}
    missing = [k for k in own if k not in weights and k not in head_keys]
    unexpected = [k for k in weights if k not in own]
    wrong = [
        k for k in own if k in weights and k not in head_keys and weights[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        detail = (missing or unexpected or wrong)[:3]
        raise EdgeTrainError(
            f"the weights in {path} do not fit this model's backbone "
            f"({len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} of another "
            f"shape, e.g. {detail}); --init needs a run of the same architecture"
        )
    load = {k: v for k, v in weights.items() if k not in head_keys or v.shape == own[k].shape}
    model.load_state_dict(load, strict=False)
    return {"loaded": len(load), "reinitialised": len(own) - len(load)}


# --- activation checkpointing -----------------------------------------------------------------


@contextlib.contextmanager
def _frozen_bn_stats(module: nn.Module) -> Iterator[None]:
    # The recomputation in backward must not update BatchNorm running statistics a second time.
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in zip(bns, saved, strict=True):
            m.momentum = mom


class Checkpointed(nn.Module):
    """Runs `block` without keeping its inner activations; they are recomputed in backward."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return self.block(x)
        return checkpoint(
            self.block,
            x,
            use_reentrant=False,
            context_fn=lambda: (contextlib.nullcontext(), _frozen_bn_stats(self.block)),
        )


def enable_checkpointing(model: nn.Module) -> int:
    """Wrap every backbone block in `Checkpointed`; returns the number of blocks wrapped.

    State-dict keys change (`backbone.N.block.…`); save weights with `plain_state_dict`.
    """
    backbone = model.backbone
    names = [name for name, _ in backbone.named_children()]
    for name in names:
        child = getattr(backbone, name)
        if not isinstance(child, Checkpointed):
            setattr(backbone, name, Checkpointed(child))
    return len(names)


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with checkpoint wrappers removed from the keys (portable)."""
    wrapped = _wrapped_children(model)
    out = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if parts[0] == "backbone" and parts[1] in wrapped and parts[2] == "block":
            del parts[2]
        out[".".join(parts)] = value
    return out


def load_plain_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a portable state dict (see `plain_state_dict`) into a model with or without wrappers."""
    wrapped = _wrapped_children(model)
    own = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "backbone" and len(parts) > 2 and parts[1] in wrapped:
            parts.insert(2, "block")
        own[".".join(parts)] = value
    model.load_state_dict(own)


def _wrapped_children(model: nn.Module) -> set[str]:
    backbone = getattr(model, "backbone", None)  # models of ours have one; a toy net may not
    if not isinstance(backbone, nn.Module):
        return set()
    return {n for n, c in backbone.named_children() if isinstance(c, Checkpointed)}
