"""Every registered model: shapes, gradients, exact reference counts, specs, registry errors."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from edgetrain import EdgeTrainError, create_model, list_models
from edgetrain.cli import main
from edgetrain.models.profile import count_macs, count_params
from edgetrain.models.xception import XCEPTION, XCEPTION_LITE, XceptionSpec

# Keras applications reference counts with a 101-class head (../shared/DESIGN.md):
# (trainable, BatchNorm moving statistics = Keras' non-trainable count).
KERAS_COUNTS = {
    "xception": (21_013_901, 54_528),
    "xception_lite": (15_800_005, 34_928),
    "mobilenet_v2": (2_353_253, 34_112),
    "efficientnet_v2_b0": (5_988_085, 60_608),
    "efficientnet_v2_b1": (6_989_433, 71_072),
}
PAPER_MODELS = [*KERAS_COUNTS, "mobilevit_xxs"]


def test_all_paper_models_registered():
    assert set(PAPER_MODELS) <= set(list_models())


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("resolution", [64, 224])
def test_output_shape(name, resolution):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, resolution, resolution))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_models())
def test_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).train()
    x = torch.randn(2, 3, 64, 64)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([1, 3]))
    loss.backward()
    assert torch.isfinite(loss)
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradient in {bad[:5]}"


@pytest.mark.parametrize("name", list(KERAS_COUNTS))
def test_exact_keras_counts(name):
    model = create_model(name, num_classes=101)
    assert count_params(model) == KERAS_COUNTS[name]


@pytest.mark.parametrize("name", list_models())
def test_paper_head(name):
    model = create_model(name, num_classes=3, dropout=0.3)
    assert isinstance(model.backbone, nn.Sequential) and len(model.backbone) >= 5
    assert model.head.fc.out_features == 3
    assert model.head.dropout.p == pytest.approx(0.3)


@pytest.mark.parametrize("spec", [XCEPTION, XCEPTION_LITE], ids=["xception", "xception_lite"])
def test_spec_round_trip(spec):
    d = spec.to_dict()
    again = XceptionSpec.from_dict(json.loads(json.dumps(d)))
    assert again == spec
    assert again.id == spec.id
    assert spec.id.startswith("xc-") and len(spec.id) == 13


def test_spec_ids_differ_and_overrides_apply():
    assert XCEPTION.id != XCEPTION_LITE.id
    shallow = create_model("xception_lite", num_classes=10, middle_depth=2)
    assert shallow.spec.middle_depth == 2
    assert shallow.spec.id != XCEPTION_LITE.id
    full, _ = count_params(create_model("xception_lite", num_classes=10))
    fewer, _ = count_params(shallow)
    # each middle block: 3 separable convs (1x1/256, 1x1/512, 3x3/512), bias, BN
    per_block = (512 + 512 * 256 + 256 + 2 * 256) + (256 + 256 * 512 + 512 + 2 * 512)
    per_block += 9 * 512 + 512 * 512 + 512 + 2 * 512
    assert full - fewer == 6 * per_block


def test_spec_squeeze_builds_and_counts():
    # A squeeze width adds one 1x1 conv (with the block's bias) + BN before the block's convs.
    base = XCEPTION_LITE
    squeezed = base.replace(middle={**base.to_dict()["middle"], "squeeze": 128})
    m0 = create_model("xception_lite", num_classes=4)
    m1 = create_model("xception_lite", num_classes=4, middle=squeezed.middle)
    (p0, _), (p1, _) = count_params(m0), count_params(m1)
    # per middle block: the squeeze conv 512->128 (+bias, BN) replaces the first conv's input width
    before = 512 + 512 * 256  # depthwise 1x1 over 512 + pointwise 512->256
    after = (512 * 128 + 128 + 2 * 128) + (128 + 128 * 256)
    assert p1 - p0 == 8 * (after - before)
    assert m1(torch.randn(1, 3, 64, 64)).shape == (1, 4)


def test_invalid_spec_errors():
    with pytest.raises(EdgeTrainError, match="identity residual"):
        XCEPTION_LITE.replace(
            middle={**XCEPTION_LITE.to_dict()["middle"], "convs": [{"kernel": 1, "width": 256}]}
        )
    with pytest.raises(EdgeTrainError, match="odd kernel"):
        XCEPTION.replace(tail={**XCEPTION.to_dict()["tail"], "convs": [{"kernel": 2, "width": 8}]})
    with pytest.raises(EdgeTrainError, match="unknown Xception spec field"):
        create_model("xception", num_classes=3, depth=4)
    with pytest.raises(EdgeTrainError, match="unknown Xception spec fields"):
        XceptionSpec.from_dict({**XCEPTION.to_dict(), "colour": "red"})


def test_registry_errors():
    with pytest.raises(EdgeTrainError, match=r"unknown model 'xceptoin'.*Did you mean xception"):
        create_model("xceptoin", num_classes=3)
    with pytest.raises(EdgeTrainError, match="num_classes"):
        create_model("xception", num_classes=0)
    with pytest.raises(EdgeTrainError, match="dropout"):
        create_model("xception", num_classes=3, dropout=1.5)
    assert list_models("xception*") == ["xception", "xception_lite"]
    assert list_models("no-such-*") == []


def test_flop_counter_depthwise_by_hand():
    # depthwise 3x3 over 8 channels on 10x10 "same": 8 * 10 * 10 * 9 MACs;
    # pointwise 8 -> 16: 16 * 8 * 10 * 10 MACs; linear 16 -> 4 on pooled: 64 MACs
    model = nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
        nn.Conv2d(8, 16, 1, bias=False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    )

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.pre = nn.Conv2d(3, 8, 1, bias=False)  # 8 * 3 * 100 MACs
            self.body = model

        def forward(self, x):
            return self.body(self.pre(x))

    assert count_macs(Wrap(), resolution=10) == 8 * 3 * 100 + 8 * 100 * 9 + 16 * 8 * 100 + 64


def test_models_cli_json(capsys):
    assert main(["models", "--json", "--resolution", "64", "--pattern", "xception*"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"xception", "xception_lite"}
    for name, row in by_name.items():
        assert {"name", "params_trainable", "bn_stats", "macs"} <= set(row)
        assert (row["params_trainable"], row["bn_stats"]) == KERAS_COUNTS[name]
        assert row["macs"] > 0
    assert by_name["xception_lite"]["macs"] < by_name["xception"]["macs"]


def test_models_cli_bad_input(capsys):
    assert main(["models", "--resolution", "8"]) == 2
    assert "--resolution" in capsys.readouterr().err
    assert main(["models", "--pattern", "nope*"]) == 2


def test_models_says_what_fits_a_budget(capsys):
    # the planner's probe of one small model at 32 px: it fits 4 GiB and does not fit 1 MiB
    base = ["models", "--json", "--pattern", "mobilenet_v2", "--resolution", "32",
            "--batch-size", "4", "--data", "synthetic-pcb:per_class=4,size=32"]  # fmt: skip
    assert main([*base, "--memory-budget", "4GiB"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["fits"] is True and 0 < row["predicted_peak_mb"] < 4096 and row["plan"]
    assert row["num_classes"] == 6  # the head follows --data
    assert main([*base, "--memory-budget", "1MiB"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["fits"] is False and row["predicted_peak_mb"] > 1


def test_models_budget_options_are_checked(capsys):
    assert main(["models", "--data", "synthetic-pcb"]) == 2
    assert "--data is for --memory-budget" in capsys.readouterr().err
    assert main(["models", "--memory-budget", "1GiB", "--batch-size", "0"]) == 2
