"""A tiny run config for training tests: Xception-Lite with one middle block at 32 px, so that a
step takes milliseconds."""

from __future__ import annotations

from typing import Any

import pytest

TINY_RUN: dict[str, Any] = dict(
    model="xception_lite",
    model_args={"middle_depth": 1},
    data="synthetic-pcb:per_class=8,size=32",
    resolution=32,
    batch_size=8,
    epochs=2,
    threads=1,
    latency_repeat=2,
)


@pytest.fixture
def tiny_run() -> dict[str, Any]:
    """TINY_RUN as a fresh dict: `RunConfig(**{**tiny_run, "epochs": 3})`."""
    return dict(TINY_RUN)
