"""Hostile and unlucky input to training: each case once crashed with a traceback or lost data."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

from edgetrain import EdgeTrainError
from edgetrain.cli import main
from edgetrain.train import RunConfig, train
from edgetrain.train.budget import MemoryBudgetExceeded
from edgetrain.train.planner import Candidate, Plan

TINY = dict(
    model="xception_lite",
    model_args={"middle_depth": 1},
    data="synthetic-pcb:per_class=8,size=32",
    resolution=32,
    batch_size=8,
    epochs=1,
    threads=1,
    latency_repeat=2,
)


def _cli_ok_or_2(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


# --- 4: a last training batch of one image --------------------------------------------------


def test_a_last_batch_of_one_image_trains(tmp_path):
    # 48 training images (per_class=10 -> 60, 80 % train) in batches of 47 leave one image over;
    # at 32 px xception_lite's last feature map is 1x1, where BatchNorm cannot train on one image
    cfg = RunConfig(**{**TINY, "data": "synthetic-pcb:per_class=10,size=32", "batch_size": 47})
    record = train(cfg, tmp_path / "run", progress=False)
    assert record.split_counts["train"] % 47 == 1
    assert len(record.history) == 1


# --- 5: --resume of a finished run ------------------------------------------------------------


def test_resume_of_a_finished_run_changes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    first = train(RunConfig(**TINY), run, progress=False)
    before = (run / "record.json").read_bytes()
    again = train(None, run, resume=True, progress=False)
    assert (run / "record.json").read_bytes() == before
    assert again.train_step_ms == first.train_step_ms is not None
    code, _ = _cli_ok_or_2(capsys, "train", "--resume", "--out", str(run), "--no-progress")
    assert code == 0 and (run / "record.json").read_bytes() == before


# --- 6: a full disk ----------------------------------------------------------------------------


def test_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    def full(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("edgetrain.fileio.os.fsync", full)
    out = tmp_path / "run"
    args = ["train", "--no-progress", "--model", "xception_lite", "--model-arg", "middle_depth=1"]
    args += ["--data", TINY["data"], "--resolution", "32", "--batch-size", "8", "--epochs", "1"]
    code, err = _cli_ok_or_2(capsys, *args, "--threads", "1", "--out", str(out))
    assert code == 2 and "disk is full" in err


def test_torch_write_failure_becomes_an_os_error(tmp_path, monkeypatch):
    from edgetrain.train.checkpoint import save_checkpoint

    def broken(*_a, **_k):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="cannot write checkpoint"):
        save_checkpoint(tmp_path / "c.pt", {"x": torch.zeros(1)})


# --- 8: wrong types in every config source ---------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", "3", "'epochs' must be an integer"),
        ("epochs", None, "'epochs' must be an integer"),
        ("epochs", [3], "'epochs' must be an integer"),
        ("epochs", True, "'epochs' must be an integer"),
        ("lr", "fast", "'lr' must be a finite number"),
        ("channels_last", 1, "'channels_last' must be true or false"),
        ("precision", "fp64", "'precision' must be one of"),
        ("model_args", [1], "'model_args' must be a mapping"),
        ("momentum", -5, "momentum must be in"),
        ("seed", -1, "seed must be"),
        ("batch_size", 10**9, "batch size must be"),
    ],
)
def test_config_json_with_wrong_types(tmp_path, capsys, field, value, message):
    cfg = {**RunConfig(**TINY).to_dict(), field: value}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    code, err = _cli_ok_or_2(capsys, "train", "--config", str(path), "--out", str(tmp_path / "r"))
    assert code == 2 and message in err
    assert not (tmp_path / "r").exists()


def test_binary_and_non_object_configs(tmp_path, capsys):
    for name, blob in {"bin": b"\xff\xfe\x00\x01garbage", "list": b"[1, 2]", "nan": b"NaN"}.items():
        path = tmp_path / f"{name}.json"
        path.write_bytes(blob)
        code, err = _cli_ok_or_2(capsys, "train", "--config", str(path))
        assert code == 2 and str(path) in err


def test_momentum_flag_is_bounded(tmp_path, capsys):
    code, err = _cli_ok_or_2(
        capsys, "train", "--model", "mobilenet_v2", "--data", "synthetic-pcb",
        "--optimizer", "sgd", "--momentum", "-5", "--out", str(tmp_path / "r"),
    )  # fmt: skip
    assert code == 2 and "momentum must be in [0, 1)" in err


def _stop_after_epoch_one(tmp_path):
    run = tmp_path / "run"
    train(RunConfig(**{**TINY, "epochs": 2}), run, progress=False)
    (run / "record.json").unlink()  # as if killed before the end
    return run


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: {"model": s["model"]},  # structurally wrong
        lambda s: {**s, "epoch": "one"},
        lambda s: {**s, "model": {k: v.flatten()[:1] for k, v in s["model"].items()}},  # shapes
    ],
)
def test_a_wrong_checkpoint_on_resume_is_refused(tmp_path, capsys, tamper):
    run = _stop_after_epoch_one(tmp_path)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    torch.save(tamper(state), run / "checkpoint.pt")
    code, err = _cli_ok_or_2(capsys, "train", "--resume", "--out", str(run), "--no-progress")
    assert code == 2 and "checkpoint" in err
    assert "weights_only=False" not in err


def test_another_models_checkpoint_on_resume_is_refused(tmp_path, capsys):
    run = _stop_after_epoch_one(tmp_path)
    other = tmp_path / "other"
    train(RunConfig(**{**TINY, "model": "mobilenet_v2", "model_args": {}}), other, progress=False)
    (run / "checkpoint.pt").write_bytes((other / "checkpoint.pt").read_bytes())
    code, err = _cli_ok_or_2(capsys, "train", "--resume", "--out", str(run), "--no-progress")
    assert code == 2 and "does not fit this run's model" in err


# --- 9: threads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("threads", ["999", "64", "0"])
def test_threads_beyond_the_cpus_are_refused(tmp_path, capsys, threads):
    if int(threads) and int(threads) <= len(os.sched_getaffinity(0)):
        pytest.skip("this machine has that many CPUs")
    code, err = _cli_ok_or_2(
        capsys, "train", "--model", "mobilenet_v2", "--data", "synthetic-pcb",
        "--threads", threads, "--out", str(tmp_path / "r"),
    )  # fmt: skip
    assert code == 2 and "threads" in err
    assert not (tmp_path / "r").exists()


# --- 10: bad output paths -----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["a-file", "under-a-file", "proc", "read-only"])
def test_bad_out_paths(tmp_path, capsys, where):
    (tmp_path / "a-file").write_text("mine")
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o500)
    out = {
        "a-file": tmp_path / "a-file",
        "under-a-file": tmp_path / "a-file" / "run",
        "proc": "/proc/edgetrain-run",
        "read-only": tmp_path / "ro" / "run",
    }[where]
    if where == "read-only" and os.access(tmp_path / "ro", os.W_OK):
        pytest.skip("root ignores directory permissions")
    args = ["train", "--model", "xception_lite", "--model-arg", "middle_depth=1"]
    args += ["--data", TINY["data"], "--resolution", "32", "--epochs", "1", "--threads", "1"]
    code, err = _cli_ok_or_2(capsys, *args, "--no-progress", "--out", str(out))
    assert code == 2 and str(out) in err
    assert (tmp_path / "a-file").read_text() == "mine"


# --- 13: a run stopped by its budget continues under a new one -------------------------------


def test_a_budget_stopped_run_resumes_with_a_new_budget(tmp_path, capsys, monkeypatch):
    def optimistic(*_args, batch_size, budget_bytes, baseline_bytes, **_kw):
        c = Candidate(batch_size, False, "fp32", baseline_bytes / 2**20, 0.1, True)
        return Plan(budget_bytes / 2**20, baseline_bytes / 2**20, 0.0, c, (c,))

    run = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr("edgetrain.train.budget.make_plan", optimistic)
        m.setattr("edgetrain.train.budget.probe_in_subprocess", lambda *a: ([], True))
        with pytest.raises(MemoryBudgetExceeded):
            train(RunConfig(**TINY, memory_budget_mb=10.0), run, progress=False)
    assert json.loads((run / "plan.json").read_text())["budget_mb"] == 10.0
    code, err = _cli_ok_or_2(
        capsys, "train", "--resume", "--out", str(run), "--memory-budget", "64GB", "--no-progress"
    )
    assert code == 0, err
    record = json.loads((run / "record.json").read_text())
    assert record["plan"]["budget_mb"] == 64 * 1024  # the new plan, not the stale one
    assert record["config"]["memory_budget_mb"] == 64 * 1024


# --- minor: a failed --init leaves nothing behind -----------------------------------------------


def test_a_failed_init_leaves_no_run_directory(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(EdgeTrainError, match="cannot load checkpoint"):
        train(RunConfig(**TINY, init=str(bad)), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


# --- 11: files skipped before and at decoding are in the record ------------------------------


def test_skipped_files_are_in_the_record(tmp_path):
    from PIL import Image

    rng = torch.Generator().manual_seed(0)
    for cls in ("ok", "defect"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(12):
            px = torch.randint(0, 255, (24, 24, 3), generator=rng, dtype=torch.uint8).numpy()
            Image.fromarray(px).save(tmp_path / "data" / cls / f"{i}.png")
    (tmp_path / "data" / "ok" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "data" / "ok" / "notes.txt").write_text("not an image")
    cfg = RunConfig(**{**TINY, "data": f"folder:{tmp_path / 'data'}", "batch_size": 4})
    record = train(cfg, tmp_path / "run", progress=False)
    files = {Path(s["file"]).name: s for s in record.skipped_files}
    assert "broken.jpg" in files, record.skipped_files
    assert sum(record.split_counts.values()) == 24  # the broken file is counted nowhere
    saved = json.loads((tmp_path / "run" / "record.json").read_text())
    assert any(s["file"].endswith("broken.jpg") for s in saved["skipped_files"])
