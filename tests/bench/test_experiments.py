"""Experiment files: shipped ones load, placeholders, validation."""

from __future__ import annotations

import pytest

from edgetrain import EdgeTrainError
from edgetrain.bench.experiments import (
    experiment_from_dict,
    load_experiment,
    parse_data_args,
    resolve_cell_config,
    shipped_experiments,
)


def test_shipped_experiments_load():
    names = shipped_experiments()
    assert {"quick", "paper-caltech101", "paper-pcb", "pku-pcb"} <= set(names)
    for name in names:
        exp = load_experiment(name)
        cells = exp.cells()
        assert cells and len({c.id for c in cells}) == len(cells)


def test_quick_needs_no_paths_and_paper_ones_do():
    assert load_experiment("quick").placeholders() == set()
    assert load_experiment("paper-caltech101").placeholders() == {"caltech101"}
    paper = load_experiment("paper-caltech101")
    cfg = paper.cells()[0].config
    assert (cfg.resolution, cfg.batch_size, cfg.epochs, cfg.lr, cfg.select) == (
        224,
        16,
        60,
        1e-3,
        "last",
    )
    with pytest.raises(EdgeTrainError, match="--data caltech101=PATH"):
        resolve_cell_config(cfg, {})
    real = resolve_cell_config(cfg, {"caltech101": "/data/c101"})
    assert real.data == "caltech101:/data/c101"


def test_cell_ids_do_not_depend_on_paths():
    # the cell keeps its placeholder, so machines with different paths share one cell id
    a = load_experiment("paper-pcb").cells()[0]
    assert "{pcb}" in a.config.data


def test_seeds_override():
    exp = load_experiment("quick").with_seeds(3)
    assert len(exp.cells()) == 3 * len(load_experiment("quick").cells())
    with pytest.raises(EdgeTrainError):
        exp.with_seeds(0)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"models": ["xception"]}, "datasets"),
        ({"models": ["nope"], "datasets": {"d": "synthetic-pcb"}}, "unknown model"),
        ({"models": ["xception"], "datasets": {"d": "synthetic-pcb"}, "colour": 1}, "unknown keys"),
        ({"models": ["xception"], "datasets": {"d": "x"}, "run": {"model": "y"}}, "must not set"),
        ({"models": ["xception"], "datasets": {"d": "x"}, "run": {"epochs": 0}}, "epochs"),
        ({"models": ["xception"], "datasets": {"d": "x"}, "seeds": "0"}, "seeds"),
    ],
)
def test_bad_experiments(raw, message):
    with pytest.raises(EdgeTrainError, match=message):
        experiment_from_dict(raw, source="test.toml")


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("models = [")
    with pytest.raises(EdgeTrainError, match="not valid TOML"):
        load_experiment(str(bad))
    with pytest.raises(EdgeTrainError, match="unknown experiment"):
        load_experiment("no-such-experiment")
    with pytest.raises(EdgeTrainError, match="NAME=PATH"):
        parse_data_args(["caltech101"])
