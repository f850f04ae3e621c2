"""Atomic checkpoints: written to a temp file and renamed, loaded back with weights_only=True."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from edgetrain.errors import EdgeTrainError

CHECKPOINT = "checkpoint.pt"


def atomic_write_bytes(path: Path, write) -> None:
    """Call `write(fileobj)` on a temp file in `path`'s folder, fsync, then rename over `path`.

    A crash at any moment leaves either the old file or the new one, never a torn file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save a training state (tensors, dicts, lists, numbers, strings only) atomically."""
    atomic_write_bytes(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint safely: `weights_only=True` refuses anything but tensors and plain data,
    so an untrusted file cannot run code."""
    if not path.is_file():
        raise EdgeTrainError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or not a plain-data checkpoint
        raise EdgeTrainError(f"cannot load checkpoint {path}: {exc}") from None
