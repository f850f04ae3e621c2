"""The PyTorch model of a run directory, ready for inference: the tested weights in eval mode.

The weights are the ones the run's test score belongs to: tested.pt (written after testing, with
the BatchNorm statistics the test used), else, for runs of older versions, best.pt for
`--select best-val` (when present) or the last epoch's checkpoint.pt. Loaded only through
`load_checkpoint` (`weights_only=True`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgetrain.errors import EdgeTrainError
from edgetrain.preprocess import normalize
from edgetrain.train.checkpoint import load_checkpoint
from edgetrain.train.config import RunConfig
from edgetrain.train.modes import load_plain_state_dict
from edgetrain.train.rundir import RunDir
from edgetrain.train.setup import build_model


@dataclass
class RunModel:
    """A run's model in eval mode; `logits(x)` maps (N, 3, R, R) float32 numpy to (N, C)."""

    run: RunDir
    config: RunConfig
    model: nn.Module
    classes: list[str]
    checkpoint: Path  # the file the weights came from

    @property
    def resolution(self) -> int:
        return self.config.resolution

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, 3, R, R) -> float32, as training normalised them."""
        return normalize(images)

    def logits(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x)
        if self.config.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.model(t).float().numpy()


def weights_file(run: RunDir, config: RunConfig) -> Path:
    """The checkpoint whose weights the run's test score belongs to: tested.pt (BatchNorm
    statistics as tested) when the run wrote one."""
    if run.tested.is_file():
        return run.tested
    if config.select == "best-val" and run.best.is_file():
        return run.best
    if not run.checkpoint.is_file():
        raise EdgeTrainError(
            f"{run.path} has no checkpoint ({run.checkpoint.name}): the run never finished an "
            "epoch; train it (or --resume it) first"
        )
    return run.checkpoint


def load_run_model(path: str | Path) -> RunModel:
    """Build the model of run directory `path` and load its tested weights, in eval mode."""
    run = RunDir(path)
    if not run.path.is_dir():
        raise EdgeTrainError(f"no run directory at {run.path}")
    config = run.load_config()
    ckpt = weights_file(run, config)
    state = load_checkpoint(ckpt)
    classes = _classes(run, state)
    weights = state.get("model")
    if not isinstance(weights, dict):
        raise EdgeTrainError(f"{ckpt} holds no model weights (no 'model' state dict)")
    head = weights.get("head.fc.weight")
    if isinstance(head, torch.Tensor) and head.shape[0] != len(classes):
        raise EdgeTrainError(
            f"{run.path}: class count mismatch: the weights have {head.shape[0]} outputs, the "
            f"run lists {len(classes)} classes"
        )
    # init=None: the run's own weights replace any starting weights, which need not exist now
    built = build_model(config.replace(init=None, train_scope="all"), len(classes))
    try:
        load_plain_state_dict(built.model, weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise EdgeTrainError(f"{ckpt} does not fit the run's model ({first})") from None
    model = built.model.eval()
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return RunModel(run, config, model, classes, ckpt)


def _classes(run: RunDir, state: dict) -> list[str]:
    classes = state.get("classes")
    if not classes and run.checkpoint.is_file():
        classes = load_checkpoint(run.checkpoint).get("classes")  # best/tested hold weights only
    if not classes and run.is_finished():
        classes = run.load_record().classes
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise EdgeTrainError(f"{run.path}: the run does not name its classes (checkpoint, record)")
    return list(classes)
