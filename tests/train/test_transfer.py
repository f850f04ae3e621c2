"""Transfer learning: --init from another run (new head), and staged training (head, then all)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from edgetrain import EdgeTrainError
from edgetrain.cli import main
from edgetrain.train import RunConfig, train
from edgetrain.train.stages import parse_stages

TINY = dict(
    model="xception_lite",
    model_args={"middle_depth": 1},
    resolution=32,
    batch_size=8,
    threads=1,
    latency_repeat=2,
)


def _three_class_folder(root):
    rng = np.random.default_rng(0)
    for c, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(12):
            img = np.clip(rng.normal(colour, 40, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{i:02d}.png")
    return root


def test_parse_stages():
    assert parse_stages("head:5,all:3") == [("head", 5), ("all", 3)]
    assert parse_stages("paper") == [("head", 60), ("all", 20)]
    assert parse_stages("last:2:4") == [("last:2", 4)]
    for bad in ("head", "head:0", "nope:3", "all:x"):
        with pytest.raises(EdgeTrainError):
            parse_stages(bad)


@pytest.mark.slow
def test_pretrain_then_two_stages_on_other_classes(tmp_path, capsys):
    pre = tmp_path / "pre"
    train(
        RunConfig(**TINY, data="synthetic-pcb:per_class=8,size=32", epochs=1), pre, progress=False
    )
    data = _three_class_folder(tmp_path / "three")
    out = tmp_path / "ft"
    args = [
        "train",
        "--no-progress",
        "--json",
        "--model",
        "xception_lite",
        "--model-arg",
        "middle_depth=1",
        "--data",
        f"folder:{data}",
        "--resolution",
        "32",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--latency-repeat",
        "2",
        "--init",
        str(pre),
        "--stages",
        "head:1,all:1",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["train_scope"] for r in rows] == ["head", "all"]
    head_params = 2048 * 3 + 3  # a new 3-class head on 2048 features
    assert rows[0]["params_trainable"] == head_params
    assert rows[1]["params_trainable"] > 100 * head_params
    # freezing the backbone: no backbone gradients, optimizer state or saved activations
    assert rows[0]["analytic_mb"] < rows[1]["analytic_mb"] / 2
    first = json.loads((out / "stage1-head" / "record.json").read_text())
    assert first["init"]["reinitialised"] == 2  # the head did not fit: re-initialised
    second = json.loads((out / "stage2-all" / "config.json").read_text())
    assert second["init"] == str(out / "stage1-head")
    # running the same command again finds both stages done
    assert main(args) == 0
    assert "already done" in capsys.readouterr().err


def test_init_from_another_architecture_is_a_clear_error(tmp_path, capsys):
    pre = tmp_path / "pre"
    train(
        RunConfig(**TINY, data="synthetic-pcb:per_class=8,size=32", epochs=1), pre, progress=False
    )
    code = main(
        [
            "train",
            "--no-progress",
            "--model",
            "mobilenet_v2",
            "--data",
            "synthetic-pcb:per_class=8,size=32",
            "--resolution",
            "32",
            "--epochs",
            "1",
            "--init",
            str(pre),
            "--out",
            str(tmp_path / "x"),
        ]
    )
    assert code == 2
    assert "do not fit this model's backbone" in capsys.readouterr().err
