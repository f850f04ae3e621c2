"""Classification metrics as pure functions of a confusion matrix."""

from __future__ import annotations

import torch


def confusion_matrix(targets: torch.Tensor, preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts; rows = true class, columns = predicted class."""
    idx = targets.long() * num_classes + preds.long()
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def accuracy(cm: torch.Tensor) -> float:
    total = int(cm.sum())
    return float(cm.diag().sum()) / total if total else 0.0


def per_class_accuracy(cm: torch.Tensor) -> list[float | None]:
    """Recall of each class; None for a class with no samples in this split."""
    support = cm.sum(1)
    return [float(cm[i, i]) / int(s) if s else None for i, s in enumerate(support.tolist())]


def macro_f1(cm: torch.Tensor) -> float:
    """Mean F1 over the classes that occur in the split (as true or predicted labels)."""
    cm = cm.double()
    tp = cm.diag()
    support, predicted = cm.sum(1), cm.sum(0)
    present = (support + predicted) > 0
    if not present.any():
        return 0.0
    f1 = 2 * tp / (support + predicted).clamp(min=1)
    return float(f1[present].mean())
