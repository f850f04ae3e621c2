"""The benchmark report: summary tables, Pareto fronts with hypervolume, plots, Markdown and HTML.

    records, warnings = records_from_dir("runs/")
    write_report(records, "runs/report", title="quick", notes=warnings)

The Pareto math is in `edgetrain.report.pareto` (pure NumPy), the grouping and formatting of the
tables in `edgetrain.report.tables`, the plots in `edgetrain.report.plots`. The names below are
imported on first use: `edgetrain.report.storage`, which every command that opens a study
uses, must not load the plotting stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgetrain.report.load import records_from_dir, records_from_study
    from edgetrain.report.pareto import default_reference, hypervolume, non_dominated
    from edgetrain.report.render import write_report

__all__ = [
    "default_reference",
    "hypervolume",
    "non_dominated",
    "records_from_dir",
    "records_from_study",
    "write_report",
]
_HOME = {
    "default_reference": "pareto",
    "hypervolume": "pareto",
    "non_dominated": "pareto",
    "records_from_dir": "load",
    "records_from_study": "load",
    "write_report": "render",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"edgetrain.report.{_HOME[name]}"), name)
    raise AttributeError(f"module 'edgetrain.report' has no attribute {name!r}")
