"""`edgetrain data inspect` through edgetrain.cli.main, and once through the installed script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from edgetrain.cli import main


def test_inspect_json_has_classes_splits_and_skipped(capsys) -> None:
    assert main(["data", "inspect", "synthetic-pcb:per_class=10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ref"] == "synthetic-pcb:per_class=10"
    assert len(out["classes"]) == 6
    assert out["splits"] == {"train": 48, "val": 6, "test": 6}
    assert out["skipped"] == []


def test_inspect_table_reports_skips_groups_and_sizes(make_classes, capsys) -> None:
    root = make_classes({"a": 12, "b": 12}, name="{i:02d}_{cls}.jpg")
    (root / "a" / "junk.txt").write_text("x")
    assert main(["data", "inspect", rf"folder:{root}?group=^(\d)\d_"]) == 0
    out = capsys.readouterr().out
    assert "junk.txt" in out and "not an image file (.txt)" in out
    assert "groups in train" in out
    assert "40 x 30" in out  # size statistics


def test_inspect_sheet_writes_a_png(tmp_path: Path, capsys) -> None:
    sheet = tmp_path / "sheet.png"
    args = ["data", "inspect", "synthetic-pcb:per_class=5", "--sheet", str(sheet)]
    assert main([*args, "--resolution", "32", "--per-class", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sheet"] == str(sheet)
    im = Image.open(sheet)
    assert im.height >= 6 * 32 and im.width >= 3 * 32


def test_inspect_pku_sheet_and_decode(make_pku, tmp_path: Path, capsys) -> None:
    sheet = tmp_path / "pku.png"
    args = ["data", "inspect", f"pku-pcb:{make_pku()}", "--sheet", str(sheet), "--decode"]
    assert main([*args, "--resolution", "24", "--cache-dir", str(tmp_path / "c"), "--json"]) == 0
    assert sheet.is_file()
    assert list((tmp_path / "c" / "data").glob("*.pt"))  # --decode filled the cache


def test_inspect_errors_exit_2_with_a_message(tmp_path: Path, capsys) -> None:
    assert main(["data", "inspect", f"folder:{tmp_path / 'missing'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["data", "inspect", "mnist:/x"]) == 2
    assert "unknown dataset reference" in capsys.readouterr().err


def test_installed_script_runs(make_classes) -> None:
    exe = Path(sys.executable).with_name("edgetrain")
    root = make_classes({"a": 5, "b": 5})
    proc = subprocess.run(
        [str(exe), "data", "inspect", f"folder:{root}", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["splits"] == {"train": 8, "val": 0, "test": 2}
    bad = subprocess.run(
        [str(exe), "data", "inspect", f"folder:{root / 'a'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "no readable images" in bad.stderr and "not inside a class folder" in bad.stderr
