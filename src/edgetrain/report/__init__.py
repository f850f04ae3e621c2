"""The benchmark report: summary tables, Pareto fronts with hypervolume, plots, Markdown and HTML.

    records, warnings = records_from_dir("runs/")
    write_report(records, "runs/report", title="quick", notes=warnings)

The Pareto math is in `edgetrain.report.pareto` (pure NumPy), the grouping and formatting of the
tables in `edgetrain.report.tables`, the plots in `edgetrain.report.plots`.
"""

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
