"""synthetic-pcb: deterministic, fast, not trivially separable, and learnable by a small CNN."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from edgetrain.data import BatchLoader, load_split, normalize, resolve
from edgetrain.data.synthetic import CLASSES, render


def test_render_is_deterministic_and_independent_of_the_batch() -> None:
    a = render([0, 1, 2, 3], [0, 1, 2, 3], size=32, seed=0)
    b = render([2], [2], size=32, seed=0)
    assert a.shape == (4, 3, 32, 32) and a.dtype == torch.uint8
    assert torch.equal(a[2], b[0])
    assert torch.equal(a, render([0, 1, 2, 3], [0, 1, 2, 3], size=32, seed=0))
    assert not torch.equal(a, render([0, 1, 2, 3], [0, 1, 2, 3], size=32, seed=1))


def test_default_set_is_small_and_quick() -> None:
    t0 = time.perf_counter()
    s = resolve("synthetic-pcb")
    x, y = load_split(s, "train", resolution=64)
    elapsed = time.perf_counter() - t0
    assert s.classes == CLASSES
    assert x.shape == (480, 3, 64, 64) and torch.equal(y.bincount(), torch.full((6,), 80))
    assert elapsed < 10  # typically ~0.5 s on 2 cores


def test_classes_do_not_differ_in_global_colour_or_brightness() -> None:
    """A linear classifier on per-image colour statistics stays near chance (1/6)."""
    s = resolve("synthetic-pcb:per_class=120")
    x, y = load_split(s, "train", resolution=32)
    xt, yt = load_split(s, "test", resolution=32)

    def feats(a: torch.Tensor) -> torch.Tensor:
        a = a.float() / 255
        return torch.cat([a.mean((2, 3)), a.std((2, 3)), a.amax((2, 3)), a.amin((2, 3))], 1)

    f, ft = feats(x), feats(xt)
    mu, sd = f.mean(0), f.std(0)
    f, ft = (f - mu) / sd, (ft - mu) / sd
    torch.manual_seed(0)
    lin = nn.Linear(f.shape[1], 6)
    opt = torch.optim.Adam(lin.parameters(), 0.05)
    for _ in range(200):
        loss = nn.functional.cross_entropy(lin(f), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    acc = (lin(ft).argmax(1) == yt).float().mean().item()
    assert acc < 0.33, f"global colour statistics separate the classes ({acc:.2f})"
    # Per-class mean brightness differs far less than brightness varies within a class.
    bright = x.float().mean((1, 2, 3))
    means = torch.stack([bright[y == c].mean() for c in range(6)])
    assert means.std() < 0.25 * bright.std()


@pytest.mark.slow
def test_a_small_cnn_learns_the_defects() -> None:
    """A few epochs on 480 images at 32 px: held-out accuracy far above chance (1/6)."""
    torch.manual_seed(0)
    s = resolve("synthetic-pcb:per_class=100", seed=0)
    x, y = load_split(s, "train", resolution=32)
    held = [load_split(s, sp, resolution=32) for sp in ("val", "test")]
    xh, yh = torch.cat([h[0] for h in held]), torch.cat([h[1] for h in held])  # 120 images

    def conv(i: int, o: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()
        )

    w = 16
    model = nn.Sequential(
        conv(3, w), conv(w, w), nn.MaxPool2d(2),
        conv(w, 2 * w), conv(2 * w, 2 * w), nn.MaxPool2d(2),
        conv(2 * w, 4 * w), conv(4 * w, 4 * w), nn.MaxPool2d(2),
        conv(4 * w, 4 * w), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4 * w, 6),
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    loader = BatchLoader(x, y, batch_size=32, shuffle=True, augment=False, seed=0)
    for epoch in range(12):
        model.train()
        for xb, yb in loader.epoch(epoch):
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(normalize(xh)).argmax(1) == yh).float().mean().item()
    assert acc > 0.5, f"held-out accuracy {acc:.2f}; chance is 0.17"
