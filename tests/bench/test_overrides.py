"""`edgetrain bench --set run.KEY=VALUE`: validated overrides of an experiment's [run] options."""

from __future__ import annotations

import optuna
import pytest

from edgetrain.bench.experiments import load_experiment, parse_set_args
from edgetrain.cli import main
from edgetrain.errors import EdgeTrainError


def test_values_are_typed_by_the_run_config_field():
    items = ["run.resolution=96", "run.lr=1", "run.optimizer=sgd", "run.bn_momentum=none"]
    items += ["run.augment=true", "run.train_scope=last:2", "run.model_args.middle_depth=2"]
    got = parse_set_args(items)
    assert got == {
        "resolution": 96,
        "lr": 1.0,
        "optimizer": "sgd",
        "bn_momentum": None,
        "augment": True,
        "train_scope": "last:2",
        "model_args": {"middle_depth": 2},
    }


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("run.resolutoin=96", "unknown run option 'resolutoin'; did you mean run.resolution?"),
        ("run.epochs=ten", "run.epochs takes an integer, got 'ten'"),
        ("run.epochs=1.5", "run.epochs takes an integer"),
        ("run.augment=1", "run.augment takes true or false"),
        ("run.optimizer=rmsprop", "run.optimizer must be one of adam, sgd"),
        ("run.model=xception", "model is a dimension of the matrix"),
        ("epochs=3", "expected run.KEY=VALUE"),
    ],
)
def test_a_bad_override_is_one_line_and_exit_2(tmp_path, tiny_experiment, capsys, item, message):
    with pytest.raises(EdgeTrainError, match=message.replace("?", r"\?")):
        parse_set_args([item])
    argv = ["bench", str(tiny_experiment()), "--out", str(tmp_path), "--set", item]
    assert main([*argv, "--enqueue-only"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "study.db").exists()  # refused before anything was written


def test_overrides_are_part_of_the_cell_ids(tiny_experiment):
    exp = load_experiment(str(tiny_experiment()))
    ids = lambda *items: [c.id for c in exp.with_run(parse_set_args(list(items))).cells()]  # noqa: E731
    base = [c.id for c in exp.cells()]
    scaled = ids("run.resolution=48", "run.epochs=2")
    assert scaled == ids("run.epochs=2", "run.resolution=48")  # order does not matter
    assert not set(scaled) & set(base)  # other settings: other cells
    assert ids("run.resolution=48") != scaled
    assert ids("run.epochs=1") == base  # the experiment's own value: the same cells
    cfg = exp.with_run(parse_set_args(["run.model_args.stem_bias=true"])).cells()[0].config
    assert cfg.model_args == {"middle_depth": 1, "stem_bias": True}  # merged, not replaced


def test_bench_enqueues_overridden_cells_in_their_own_study(tmp_path, tiny_experiment, capsys):
    toml = tiny_experiment()
    sets = ["--set", "run.resolution=48", "--set", "run.epochs=2"]
    assert main(["bench", str(toml), "--out", str(tmp_path), *sets, "--enqueue-only"]) == 0
    assert "'tiny-epochs2-resolution48'" in capsys.readouterr().out.replace("\n", " ")
    study = optuna.load_study(
        study_name="tiny-epochs2-resolution48", storage=f"sqlite:///{tmp_path / 'study.db'}"
    )
    configs = [t.user_attrs["config"] for t in study.get_trials()]
    assert [(c["resolution"], c["epochs"]) for c in configs] == [(48, 2), (48, 2)]
