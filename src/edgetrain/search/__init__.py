"""Architecture search: spaces as data, feasibility before training, Optuna does the search."""
