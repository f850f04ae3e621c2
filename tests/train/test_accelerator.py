"""The compute device through its seam: `--accelerator` choices and refusals, fp16 gradient
scaling, device memory in the record; CUDA-only tests skip cleanly without a GPU."""

from __future__ import annotations

import json

import pytest
import torch

import edgetrain.train.accelerator as accelerator
from edgetrain.cli import main
from edgetrain.errors import EdgeTrainError
from edgetrain.train.accelerator import (
    Accelerator,
    CudaAccelerator,
    check_accelerator_syntax,
    fused_adam_ok,
    parse_accelerator,
    resolve_accelerator,
)

CUDA = torch.cuda.is_available()
TINY = ["--model", "xception_lite", "--model-arg", "middle_depth=1", "--data",
        "synthetic-pcb:per_class=8,size=32", "--resolution", "32", "--epochs", "1",
        "--batch-size", "8", "--threads", "1", "--latency-repeat", "1", "--no-progress"]  # fmt: skip


@pytest.mark.skipif(CUDA, reason="a GPU is present")
def test_cuda_without_a_gpu_is_one_line_and_writes_nothing(tmp_path, capsys):
    assert main(["train", *TINY, "--accelerator", "cuda", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "sees no CUDA GPU" in err and "--accelerator cpu" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--accelerator", "tpu"], "accelerator must be auto, cpu, cuda or cuda:N"),
        (["--accelerator", "cpu", "--precision", "fp16"], "fp16 with gradient scaling runs on"),
    ],
)
def test_bad_device_choices(tmp_path, capsys, flags, message):
    assert main(["train", *TINY, *flags, "--out", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err


def test_auto_is_the_cpu_without_a_gpu():
    assert parse_accelerator("auto") == (("cuda", 0) if CUDA else ("cpu", 0))
    assert parse_accelerator("cuda:2") == ("cuda", 2)
    assert parse_accelerator("cuda") == ("cuda", 0)


def _fake_gpus(monkeypatch, count=1, bf16=True):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Xavier (fake)")
    props = type("Props", (), {"is_integrated": True, "name": "Xavier (fake)"})()
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda *a: props)


def test_out_of_range_gpu_index_is_refused(monkeypatch):
    _fake_gpus(monkeypatch, count=2)
    with pytest.raises(EdgeTrainError, match=r"has 2 GPU\(s\), 0..1"):
        resolve_accelerator(precision="fp32", channels_last=True, accelerator="cuda:2")


def test_bf16_on_a_gpu_without_it_points_to_fp16(monkeypatch):
    _fake_gpus(monkeypatch, bf16=False)
    with pytest.raises(EdgeTrainError, match="use --precision fp16"):
        resolve_accelerator(precision="bf16", channels_last=True, accelerator="cuda")
    accel = resolve_accelerator(precision="fp32", channels_last=True, accelerator="cuda:0")
    assert isinstance(accel, CudaAccelerator) and accel.name == "cuda:0" and accel.scaler is None
    assert accel.unified  # an integrated GPU: the budget counts RSS and allocations together
    model = torch.nn.Linear(2, 2)  # 6 floats
    assert accel.planning_baseline_bytes(model, rss_bytes=1000) == 1024


class _Scaler:
    def __init__(self):
        self.calls = []

    def scale(self, loss):
        self.calls.append("scale")
        return loss * 1024.0

    def step(self, optimizer):
        self.calls.append("step")
        optimizer.step()

    def update(self):
        self.calls.append("update")


def test_fp16_scales_the_loss_and_steps_through_the_scaler():
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.0)
    accel = CudaAccelerator("cuda", "fp16", True, 0, _Scaler())
    accel.backward((w * 2).sum())
    accel.step(opt)
    assert accel.scaler.calls == ["scale", "step", "update"]
    assert torch.allclose(w.grad, torch.full((3,), 2048.0))  # the scaled gradient
    plain = Accelerator()
    w.grad = None
    plain.backward((w * 2).sum())
    assert torch.allclose(w.grad, torch.full((3,), 2.0))


def test_record_says_where_it_ran_and_resume_may_change_device(tmp_path):
    out = tmp_path / "r"
    assert main(["train", *TINY, "--epochs", "2", "--out", str(out)]) == 0
    record = json.loads((out / "record.json").read_text())
    assert record["accelerator"] == ("cuda:0" if CUDA else "cpu")
    assert record["config"]["accelerator"] == "auto"
    if not CUDA:
        assert record["gpu_peak_allocated_mb"] is None and record["unified_memory"] is None
    # a resumed run may move to another device; other flags stay refused
    (out / "record.json").unlink()
    assert main(["train", "--resume", "--out", str(out), "--accelerator", "cpu",
                 "--no-progress"]) == 0  # fmt: skip
    assert json.loads((out / "config.json").read_text())["accelerator"] == "cpu"


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_trains_on_the_gpu_with_device_memory(tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    out = tmp_path / precision
    assert main(["train", *TINY, "--accelerator", "cuda", "--precision", precision,
                 "--out", str(out)]) == 0  # fmt: skip
    record = json.loads((out / "record.json").read_text())
    assert record["accelerator"] == "cuda:0" and record["gpu_peak_allocated_mb"] > 0
    assert record["gpu_peak_reserved_mb"] >= record["gpu_peak_allocated_mb"]
    assert all(r["gpu_peak_allocated_mb"] > 0 for r in record["history"])


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_a_gpu_checkpoint_resumes_on_the_cpu(tmp_path):
    out = tmp_path / "r"
    assert main(["train", *TINY, "--epochs", "2", "--accelerator", "cuda", "--out", str(out)]) == 0
    (out / "record.json").unlink()
    assert main(["train", "--resume", "--out", str(out), "--accelerator", "cpu",
                 "--no-progress"]) == 0  # fmt: skip
    assert json.loads((out / "record.json").read_text())["accelerator"] == "cpu"


def test_gpu_planning_baseline_counts_weights_and_buffers():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    accel = CudaAccelerator("cuda", "fp32", True, 0)
    # conv 4*3*3*3 + 4, BN weight/bias 4 + 4, running mean/var 4 + 4 floats, one int64 counter
    assert accel.planning_baseline_bytes(model, rss_bytes=123) == (112 + 8 + 8) * 4 + 8
    assert Accelerator().planning_baseline_bytes(model, rss_bytes=123) == 123
    assert Accelerator().used_bytes(456) == 456


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_a_device_memory_budget_is_planned_and_guarded(tmp_path):
    out = tmp_path / "r"
    assert main(["train", *TINY, "--accelerator", "cuda", "--memory-budget", "2GiB",
                 "--out", str(out)]) == 0  # fmt: skip
    plan = json.loads((out / "plan.json").read_text())
    assert plan["budget_mb"] == 2048 and plan["baseline_mb"] < 100  # weights, not RSS
    record = json.loads((out / "record.json").read_text())
    assert record["gpu_peak_allocated_mb"] <= 2048


def test_jetson_profiles_train_on_their_gpu():
    from edgetrain.train.budget import apply_device_profile
    from edgetrain.train.config import RunConfig
    from edgetrain.train.devices import load_device

    assert load_device("jetson-xavier-nx-8gb").accelerator == "cuda"
    assert load_device("raspberry-pi-4-4gb").accelerator == "cpu"
    base = RunConfig(model="xception_lite", data="synthetic-pcb", device="jetson-orin-nano-8gb")
    assert apply_device_profile(base).accelerator == "cuda"
    assert apply_device_profile(base.replace(accelerator="cpu")).accelerator == "cpu"


@pytest.mark.parametrize(
    "text", ["cpu:1", "cuda:", "cuda:1234", "cuda:-1", "auto:0", "cuda:\u0661"]
)
def test_the_grammar_comes_from_the_kind_table(text):
    with pytest.raises(EdgeTrainError, match="accelerator must be auto, cpu, cuda or cuda:N"):
        check_accelerator_syntax(text)


def test_a_new_kind_is_one_class_and_one_row(monkeypatch):
    class FakeAccelerator(Accelerator):
        indexed = True
        fused_adam = False

        @classmethod
        def is_available(cls) -> bool:
            return True

    monkeypatch.setitem(accelerator._KINDS, "fake", FakeAccelerator)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert check_accelerator_syntax("fake:3") == ("fake", 3)
    assert not fused_adam_ok("fake") and fused_adam_ok("cpu")
    # "auto" tries the kinds in table order: with no GPU, the first available one
    assert parse_accelerator("auto")[0] in ("fake", "cpu")


def test_auto_prefers_a_gpu_the_table_sees(monkeypatch):
    _fake_gpus(monkeypatch)
    assert parse_accelerator("auto") == ("cuda", 0)
    assert accelerator.accelerator_class("cuda").auto_precision(0)[0] == "bf16"
    _fake_gpus(monkeypatch, bf16=False)
    assert accelerator.accelerator_class("cuda").auto_precision(0)[0] == "fp16"
