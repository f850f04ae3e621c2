"""The probe's own process: `python -m edgetrain.train.probe_child REQUEST_JSON` builds the
run's model, probes it and prints one JSON line (see `probe.probe_facts`, which starts it).

It lives apart from `probe.py` because it imports the engine (so the trainer's imports count in
the baseline RSS it reports), and the engine imports the planner, which imports `probe.py`: in
a module that nothing imports, that import closes no cycle.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Any

import torch

import edgetrain.train.engine  # noqa: F401  (the trainer's code: its imports count too)
from edgetrain.measure import current_rss_bytes
from edgetrain.models.profile import count_macs
from edgetrain.train.accelerator import resolve_accelerator
from edgetrain.train.config import RunConfig
from edgetrain.train.probe import can_train_single_image, probe_settings
from edgetrain.train.setup import build_model


def probe_main(request: dict[str, Any]) -> dict[str, Any]:
    """Probe the model of `request["config"]` for `request["precisions"]`; the facts as JSON."""
    config = RunConfig.from_dict(request["config"])
    if config.threads:
        torch.set_num_threads(config.threads)
    model = build_model(config, request["num_classes"]).model
    built_rss = current_rss_bytes()  # the runtime and the weights, before any step
    r = config.resolution
    macs = count_macs(model, r)  # on the CPU, where count_macs makes its input
    x = torch.randn(4, 3, r, r)
    y = torch.arange(4) % request["num_classes"]
    accel = resolve_accelerator(
        precision=config.precision, channels_last=False, accelerator=config.accelerator
    )
    # probe where training will run (on the CPU these are no-ops)
    model, x, y = model.to(accel.device), x.to(accel.device), y.to(accel.device)
    probes = probe_settings(
        model, x, y, channels_last=config.channels_last, precisions=tuple(request["precisions"])
    )
    return {
        "probes": [asdict(p) for p in probes],
        "single_image_ok": can_train_single_image(model, x),
        "model_rss_bytes": built_rss,
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_bytes": sum(
            p.numel() * p.element_size() for p in model.parameters() if p.requires_grad
        ),
        "macs": macs,
    }


if __name__ == "__main__":
    print(json.dumps(probe_main(json.loads(sys.argv[1]))))
