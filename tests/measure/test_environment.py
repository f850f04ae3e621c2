"""The environment record: complete, JSON-able, and free of the host's name."""

from __future__ import annotations

import json
import os
import platform

import torch

from edgetrain.measure import environment


def test_environment():
    env = environment()
    for key in (
        "torch_version",
        "torch_num_threads",
        "torch_interop_threads",
        "python_version",
        "platform",
        "cpu_model",
        "cpu_avx2",
        "cpu_avx512f",
        "cpu_avx512_bf16",
        "cpu_amx_bf16",
        "cpu_count",
        "cpu_affinity",
        "machine_ram_bytes",
        "machine_ram_mb",
    ):
        assert key in env, key
    assert env["torch_version"] == torch.__version__
    assert env["torch_num_threads"] == torch.get_num_threads()
    assert env["cpu_count"] == os.cpu_count()
    assert env["machine_ram_mb"] == env["machine_ram_bytes"] / 2**20 > 0
    assert all(isinstance(env[f"cpu_{f}"], bool) for f in ("avx2", "avx512f", "amx_bf16"))
    text = json.dumps(env)
    assert "host" not in text.lower()
    assert platform.node() not in env.values()
