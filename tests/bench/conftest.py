"""A tiny experiment (seconds per cell) for bench and worker tests."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_TOML = """
name = "tiny"
description = "two tiny Xception variants, a handful of 32 px synthetic PCB patches"
models = {models}
seeds = {seeds}

[datasets]
synthetic-pcb = "synthetic-pcb:per_class=6,size=32"

[run]
model_args = {{ middle_depth = 1 }}
resolution = 32
batch_size = 8
epochs = {epochs}
threads = 1
latency_repeat = 2
"""


@pytest.fixture
def tiny_experiment(tmp_path: Path):
    def make(models=("xception_lite", "xception"), seeds=(0,), epochs=1) -> Path:
        path = tmp_path / "tiny.toml"
        path.write_text(
            TINY_TOML.format(
                models="[" + ", ".join(f'"{m}"' for m in models) + "]",
                seeds=list(seeds),
                epochs=epochs,
            )
        )
        return path

    return make
