"""`precision = "auto"`: the rule under faked CPU flags and a faked step timing, the record's
reason, bf16 against fp32 per model family, a bf16 run's resume, bf16 refused without it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import edgetrain.train.accelerator as accelerator
import edgetrain.train.precision as precision
from edgetrain import create_model
from edgetrain.cli import main
from edgetrain.train import RunConfig, train
from edgetrain.train.accelerator import cpu_supports_bf16

BASE = RunConfig(model="mobilenet_v2", data="synthetic-pcb", resolution=32, batch_size=4)


def test_auto_is_fp32_without_native_bf16(monkeypatch):
    monkeypatch.setattr(accelerator, "cpu_supports_bf16", lambda: False)
    monkeypatch.setattr(precision, "_timed_steps", lambda *a: pytest.fail("must not time"))
    config, why = precision.resolve_precision(BASE, 6)
    assert config.precision == "fp32" and "no native bf16" in why


@pytest.mark.parametrize(
    ("fp32_ms", "bf16_ms", "chosen"),
    [(100.0, 55.0, "bf16"), (100.0, 95.0, "fp32"), (100.0, 130.0, "fp32")],
)
def test_auto_follows_the_timed_steps(monkeypatch, fp32_ms, bf16_ms, chosen):
    monkeypatch.setattr(accelerator, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(precision, "_timed_steps", lambda *a: (fp32_ms, bf16_ms))
    config, why = precision.resolve_precision(BASE, 6)
    assert config.precision == chosen
    assert f"{bf16_ms:.0f} ms in bf16" in why and f"{fp32_ms:.0f} ms in fp32" in why


def test_a_named_precision_is_kept():
    config, why = precision.resolve_precision(BASE.replace(precision="fp32"), 6)
    assert config.precision == "fp32" and why == "fp32 as asked"


def test_the_timing_is_cached(monkeypatch):
    monkeypatch.setattr(accelerator, "cpu_supports_bf16", lambda: True)
    calls = []
    real = precision._measure_in_child

    def counting(*args):
        calls.append(args)
        return real(*args)  # a real child process: two positive step times come back

    monkeypatch.setattr(precision, "_measure_in_child", counting)
    tiny = BASE.replace(model="xception_lite", model_args={"middle_depth": 0})
    first = precision._timed_steps(tiny, 6)
    second = precision._timed_steps(tiny, 6)
    assert first == second and len(calls) == 1 and min(first) > 0


def test_the_record_says_what_auto_chose_and_why(tmp_path, monkeypatch, tiny_run):
    monkeypatch.setattr(accelerator, "cpu_supports_bf16", lambda: False)
    cfg = RunConfig(**{**tiny_run, "epochs": 1})
    assert cfg.precision == "auto"
    record = train(cfg, tmp_path / "run", progress=False)
    assert record.precision == "fp32" and record.config["precision"] == "fp32"
    assert record.precision_reason.startswith("auto:")
    assert record.run_id == cfg.replace(precision="fp32").id


# one small model per family: three SGD steps in bf16 autocast against fp32 from the same weights
FAMILIES = {
    "xception_lite": {"middle_depth": 1},
    "mobilenet_v2": {},
    "efficientnet_v2_b0": {},
    "mobilevit_xxs": {},
}


@pytest.fixture(scope="module")
def pcb_batch() -> tuple[torch.Tensor, torch.Tensor]:
    from edgetrain.data import load_split, resolve
    from edgetrain.data.loader import normalize

    splits = resolve("synthetic-pcb:per_class=4,size=64")
    x, y = load_split(splits, "train", resolution=64, progress=False)
    return normalize(x[:16]), y[:16]


def _losses(name: str, bf16: bool, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    torch.manual_seed(0)
    model = create_model(name, num_classes=6, **FAMILIES[name]).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    out = []
    for _ in range(3):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)  # the loss in fp32, as the engine does
        loss.backward()
        opt.step()
        out.append(loss.item())
    return out


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_bf16_steps_stay_close_to_fp32(name, pcb_batch):
    fp32 = _losses(name, False, *pcb_batch)
    bf16 = _losses(name, True, *pcb_batch)
    # bf16 keeps 8 mantissa bits: the first loss within 2 %, the next two within 8 % (measured up
    # to 5 % at 64 px; at 32 px up to 10 %); over many steps trajectories part as two seeds' do, and accuracy parity is
    # measured by `benchmarks/recipe.py --recipes paper,paper-fp32`, not here. (On random
    # noise images with batch 8, a fresh MobileNetV2's gradients are chaotic: cosine 0.4
    # between fp32 and bf16 at the stem, so such inputs test nothing.)
    assert bf16[0] == pytest.approx(fp32[0], rel=0.02)
    assert bf16[1:] == pytest.approx(fp32[1:], rel=0.08)


class _Interrupted(Exception):
    pass


@pytest.mark.skipif(not cpu_supports_bf16(), reason="needs a CPU with native bf16")
def test_a_bf16_run_resumes(tmp_path, monkeypatch, tiny_run):
    from edgetrain.train.rundir import RunDir

    cfg = RunConfig(**{**tiny_run, "precision": "bf16"})
    real_wait = RunDir.wait_for_verdict

    def crash(self, epoch):
        raise _Interrupted

    monkeypatch.setattr(RunDir, "wait_for_verdict", crash)
    with pytest.raises(_Interrupted):
        train(cfg, tmp_path / "run", progress=False)
    monkeypatch.setattr(RunDir, "wait_for_verdict", real_wait)
    record = train(None, tmp_path / "run", resume=True, progress=False)
    assert record.resumed and record.precision == "bf16" and len(record.history) == 2
    assert record.precision_reason == "bf16 as asked"


def test_bf16_without_native_support_is_refused_with_one_line(tmp_path, capsys, monkeypatch):
    import edgetrain.train.accelerator as accelerator

    monkeypatch.setattr(accelerator, "cpu_supports_bf16", lambda: False)
    out = tmp_path / "run"
    code = main(
        ["train", "--model", "mobilenet_v2", "--data", "synthetic-pcb", "--precision", "bf16",
         "--out", str(out)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "no native bf16" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_the_timing_batch_fits_the_budget():
    wide = BASE.replace(
        model="xception_lite", model_args={"middle_depth": 1}, resolution=64, batch_size=16
    )
    assert precision.timing_batch(wide) == wide.batch_size  # no budget: the batch as asked
    assert precision.timing_batch(wide.replace(memory_budget_mb=100_000)) == wide.batch_size
    tight = precision.timing_batch(wide.replace(memory_budget_mb=200))
    assert 2 <= tight < wide.batch_size  # 11.9 M params: 4 x 45 MB of weights leave little
    assert precision.timing_batch(wide.replace(memory_budget_mb=1)) == 2  # BatchNorm needs 2
