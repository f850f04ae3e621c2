"""`edgetrain bench`: experiment matrices as Optuna studies, workers, and the report."""
