"""Checkpoints: written atomically, loaded back with weights_only=True (no code can run)."""

from __future__ import annotations

import errno
import pickle
import re
import warnings
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
        what = "not a regular file, so not a checkpoint" if path.exists() else "no such file"
        raise EdgeTrainError(f"no checkpoint at {path} ({what})")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols, not for users
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, empty, not a checkpoint, or code in it
        raise EdgeTrainError(f"cannot load checkpoint {path}: {_reason(exc)}") from None
    if not isinstance(state, dict):
        raise EdgeTrainError(f"{path} is not an edgetrain checkpoint (no state mapping)")
    return state


def _reason(exc: Exception) -> str:
    """edgetrain's own words for why torch would not load a file. torch's message is not shown:
    for a refused pickle it goes on to advise `weights_only=False`, the option that runs the
    file's code."""
    text = str(exc).strip()
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if isinstance(exc, pickle.UnpicklingError) and found:
        return (
            f"it holds a Python object ({found[1]}) besides tensors and plain data; edgetrain "
            "refuses such files, since loading them could run code"
        )
    # torch's zip reader says what is broken in its first sentence; other errors (an empty
    # file, a pickle of another kind, random bytes) say nothing a user can act on
    gist = type(exc).__name__
    if isinstance(exc, RuntimeError) and text and "weights_only" not in text:
        gist = text.splitlines()[0].split(". ")[0][:160]
    return f"corrupt, truncated or not a PyTorch checkpoint ({gist})"
