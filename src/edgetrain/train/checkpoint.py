"""Checkpoints: written atomically, loaded back with weights_only=True (no code can run)."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import torch

from edgetrain.errors import EdgeTrainError
from edgetrain.fileio import atomic_write_bytes


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save a training state (tensors, dicts, lists, numbers, strings only) atomically."""
    try:
        atomic_write_bytes(path, lambda f: torch.save(state, f))
    except RuntimeError as exc:  # torch's writer reports a failed write (a full disk) this way
        raise OSError(
            errno.EIO, f"cannot write checkpoint ({exc})".splitlines()[0], str(path)
        ) from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint safely: `weights_only=True` refuses anything but tensors and plain data,
    so an untrusted file cannot run code."""
    if not path.is_file():
        raise EdgeTrainError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or not a plain-data checkpoint
        # torch's own message advises weights_only=False, the unsafe option: keep only its gist
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgeTrainError(
            f"cannot load checkpoint {path}: {reason[:200]} (edgetrain loads plain tensors and "
            "data only and never runs code from a checkpoint)"
        ) from None
    if not isinstance(state, dict):
        raise EdgeTrainError(f"{path} is not an edgetrain checkpoint (no state mapping)")
    return state
