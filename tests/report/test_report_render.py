"""The written report: files, self-contained HTML, escaping, Pareto section, plots."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest

from edgetrain.report import records_from_dir, write_report
from edgetrain.report.plots import read_rss_trace

PNG = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def quick_report(
    tmp_path_factory: pytest.TempPathFactory, quick_records, make_run_dir
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    for k, rec in enumerate(quick_records):
        make_run_dir(root / f"{rec['model']}-s{rec['config']['seed']}", dict(rec), rss=k % 2 == 0)
    records, warnings = records_from_dir(root)
    assert not warnings
    return write_report(records, root / "report", title="quick", notes=["a loader note"])


def test_writes_markdown_html_and_plots(quick_report: dict[str, Path]) -> None:
    assert quick_report["md"].name == "report.md" and quick_report["html"].name == "report.html"
    plots = {k: p for k, p in quick_report.items() if k.startswith("plots/")}
    kinds = sorted(k.rsplit("-", 1)[1] for k in plots)
    assert kinds == ["curves.png", "memory.png", "rss.png", "time.png"]
    for key, path in plots.items():
        assert path.is_file() and path.read_bytes().startswith(PNG), key
        assert path.parent == quick_report["md"].parent / "plots"
    md = quick_report["md"].read_text()
    for key in plots:
        assert f"]({key})" in md  # Markdown links its plots relatively


def test_html_is_self_contained(quick_report: dict[str, Path]) -> None:
    text = quick_report["html"].read_text()
    assert "<script" not in text.lower() and "<link" not in text.lower()
    assert "http://" not in text and "https://" not in text and "@import" not in text
    srcs = re.findall(r'src="([^"]*)"', text)
    assert len(srcs) == 4
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', text))
    assert "<style>" in text and 'class="num"' in text


def test_pareto_section(quick_report: dict[str, Path]) -> None:
    md = quick_report["md"].read_text()
    assert (
        "3 of 4 configurations are non-dominated: **mobilenet_v2**, **xception**, "
        "**xception_lite**." in md
    )
    assert "4 of 4 configurations are non-dominated: **efficientnet_v2_b1**" in md
    assert md.count("Hypervolume ") == 2
    # default reference: accuracy 0 and 1.1 x the worst mean (905 MB, 40.25 s)
    assert "accuracy 0\u00a0% (default: 0)" in md
    assert "peak RSS above baseline 996\u00a0MB (default: 1.1 × worst observed)" in md
    assert "training time per epoch 44.3\u00a0s (default: 1.1 × worst observed)" in md
    html = quick_report["html"].read_text()
    assert html.count('<tr class="front">') == 3
    assert "At a glance" in md and "a loader note" in md
    assert "not drawn" not in md


def test_summary_table(quick_report: dict[str, Path]) -> None:
    md = quick_report["md"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| model | init | runs"))
    assert "test acc (%)" in header and "system RAM (‰)" in header and "MACs (M)" in header
    # acc 0.926 and 0.934: mean 93.0, sample sd 0.57; 2 runs; on both fronts
    row = next(line for line in md.splitlines() if line.startswith("| xception | scratch |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "2" and cells[3] == "93.0 ± 0.6"
    assert cells[-2:] == ["✓", "✓"]
    html = quick_report["html"].read_text()
    assert '<td class="num">93.0<span class="sd">± 0.6</span></td>' in html


def test_user_names_are_escaped(tmp_path: Path, make_record) -> None:
    records = [
        make_record(
            model,
            data=f"folder:/data/{EVIL}",
            classes=[EVIL, "a$b$c", "plain"],
            acc=acc,
            peak_above_mb=mem,
            run_dir=str(tmp_path / EVIL),
        )
        for model, acc, mem in (
            ("<img src=x onerror=alert(2)>", 0.9, 500.0),
            ("m$x$", 0.8, 300.0),
        )
    ]
    out = write_report(
        records,
        tmp_path / "r",
        title=f"title {EVIL}",
        reference={"peak_above_baseline_mb": 2000.0},
        notes=[f"note {EVIL}"],
    )
    html = out["html"].read_text()
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    md = out["md"].read_text()
    assert "<script>" not in md and "<img src=x" not in md
    assert "2,000\u00a0MB (given)" in md
    assert "not drawn" not in md  # `$` in names did not break matplotlib's mathtext


def test_no_rss_trace_is_skipped(tmp_path: Path, make_record) -> None:
    out = write_report([make_record("a"), make_record("b", acc=0.95)], tmp_path, title="t")
    assert not any(k.endswith("rss.png") for k in out)
    assert "No rss.csv" in out["md"].read_text()


def test_empty_report(tmp_path: Path) -> None:
    out = write_report([], tmp_path, title="nothing yet")
    assert "No finished runs" in out["md"].read_text()
    assert out["html"].read_text().startswith("<!DOCTYPE html>")


def test_rss_trace_segments_are_laid_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "rss.csv"
    path.write_text("t_s,rss_mb,epoch\n0,100,1\n1,110,1\n2,120,1\n0,90,2\n1.5,95,2\n")
    t, rss = read_rss_trace(path)
    assert t.tolist() == [0, 1, 2, 2, 3.5]
    assert rss.tolist() == [100, 110, 120, 90, 95]
    assert np.all(np.diff(t) >= 0)
    assert read_rss_trace(tmp_path / "missing.csv") is None
    (tmp_path / "bad.csv").write_text("t,x\n1,2\n")
    assert read_rss_trace(tmp_path / "bad.csv") is None


def test_rewriting_removes_only_our_stale_plots(tmp_path: Path, make_record) -> None:
    first = write_report([make_record("a", data="old-set")], tmp_path, title="t")
    stale = [p for k, p in first.items() if k.startswith("plots/")]
    mine = tmp_path / "plots" / "my-notes.png"
    mine.write_bytes(PNG)
    second = write_report([make_record("a", data="new-set")], tmp_path, title="t")
    assert stale and not any(p.exists() for p in stale)
    assert mine.exists()
    assert all(p.exists() for p in second.values())
