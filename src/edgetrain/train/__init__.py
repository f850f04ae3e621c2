"""On-device training: `train(config, out_dir) -> RunRecord`, one readable loop, honest measures."""

from edgetrain.train.config import RunConfig
from edgetrain.train.record import RunRecord

__all__ = ["RunConfig", "RunRecord", "run_in_subprocess", "train"]


def train(config, out_dir, **kwargs):
    from edgetrain.train.engine import train as _train

    return _train(config, out_dir, **kwargs)


def run_in_subprocess(config, out_dir, **kwargs):
    from edgetrain.train.subprocess import run_in_subprocess as _run

    return _run(config, out_dir, **kwargs)
