"""The model card beside every export, and the int8 accuracy gate."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import edgetrain.deploy.export as export
from edgetrain.cli import main
from edgetrain.deploy.card import card_path, front_matter, read_front_matter, render_card
from edgetrain.deploy.sidecar import read_sidecar
from edgetrain.train.rundir import RunDir


def test_the_card_is_written_and_its_front_matter_round_trips(tiny_run: Path, exported: dict):
    card = Path(exported["card"])
    assert card == card_path(Path(exported["onnx"])) and card.name == "README.md"
    text = card.read_text()
    record = RunDir(tiny_run).load_record().to_dict()
    head = read_front_matter(text)
    assert head == front_matter(record, read_sidecar(Path(exported["onnx"])), exported)
    assert head["model_name"] == "xception_lite" and head["classes"] == record["classes"]
    assert head["dataset"] == record["config"]["data"] and head["resolution_px"] == 32
    metrics = {m["name"]: m["value"] for m in head["metrics"]}
    assert metrics["accuracy"] == round(record["test_accuracy"], 4)
    assert "onnx_int8_accuracy" in metrics
    for section in ("## Model", "## Results", "## Costs", "## Input", "## Intended use"):
        assert section in text
    # one row per class in the per-class table, the figures from the record
    assert sum(f"| {c} |" in text for c in record["classes"]) == len(record["classes"])
    assert f"{record['peak_above_baseline_mb']:.0f} MB" in text


def test_the_card_gives_the_spread_when_it_is_known(tiny_run: Path, exported: dict):
    record = RunDir(tiny_run).load_record().to_dict()
    sidecar = read_sidecar(Path(exported["onnx"]))
    text = render_card(record, sidecar, exported, spread=[0.90, 0.92, 0.94])
    assert "Over 3 runs of the same protocol" in text and "92.0 % ± 2.0 %" in text
    assert "not measured for this export" in render_card(record, sidecar, exported)


@pytest.fixture
def own_run(tiny_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("*.onnx", "*.onnx.json"))
    return run


def _planted_int8(monkeypatch, val32: float, val8: float) -> list[Path]:
    made: list[Path] = []

    def fake(rm, fp32, calibration, count):  # an int8 file that loses accuracy on validation
        int8 = fp32.with_name(fp32.stem + ".int8.onnx")
        int8.write_bytes(b"planted")
        made.append(int8)
        return {"onnx_int8": str(int8), "onnx_int8_file_mb": 0.0, "calibration": "planted",
                "onnx_val_accuracy": val32, "onnx_int8_val_accuracy": val8}  # fmt: skip

    monkeypatch.setattr(export, "_export_int8", fake)
    return made


def test_int8_that_loses_more_than_a_point_is_refused(own_run: Path, monkeypatch, capsys):
    made = _planted_int8(monkeypatch, 0.90, 0.85)
    assert main(["export", str(own_run), "--int8", "--no-measure"]) == 2
    err = capsys.readouterr().err
    assert "85.00%" in err and "90.00%" in err and "--int8-anyway" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not made[0].exists()  # not delivered
    assert (own_run / "model.onnx").exists()  # fp32 is
    assert "int8: not delivered" in (own_run / "README.md").read_text()


def test_int8_within_a_point_or_anyway_is_kept(own_run: Path, monkeypatch, capsys):
    made = _planted_int8(monkeypatch, 0.90, 0.895)
    assert main(["export", str(own_run), "--int8", "--no-measure"]) == 0
    assert made[-1].exists()
    made = _planted_int8(monkeypatch, 0.90, 0.70)
    assert main(["export", str(own_run), "--int8", "--int8-anyway", "--no-measure"]) == 0
    assert made[-1].exists() and "kept because of --int8-anyway" in capsys.readouterr().out


def test_int8_anyway_needs_int8(own_run: Path, capsys):
    assert main(["export", str(own_run), "--int8-anyway", "--no-measure"]) == 2
    assert "--int8-anyway" in capsys.readouterr().err
