"""On-device training: `train(config, out_dir) -> RunRecord`, one readable loop, honest measures.

The engine (engine.py) is prepare -> loop -> finish around one RunState (state.py); a run's
files are owned by RunDir (rundir.py) and its results follow the RunRecord schema (record.py);
`run_in_subprocess` trains in a fresh process, so its memory peaks are its own.
"""

from edgetrain.train.config import RunConfig
from edgetrain.train.engine import train
from edgetrain.train.record import RunRecord
from edgetrain.train.subprocess import run_in_subprocess

__all__ = ["RunConfig", "RunRecord", "run_in_subprocess", "train"]
