"""Memory modes compute what plain training computes; scopes train only what they should."""

from __future__ import annotations

import pytest
import torch

from edgetrain import EdgeTrainError, create_model
from edgetrain.train.accelerator import Accelerator, cpu_supports_bf16
from edgetrain.train.modes import (
    apply_train_scope,
    enable_checkpointing,
    load_init_weights,
    plain_state_dict,
    set_inplace_activations,
    set_train_mode,
)
from edgetrain.train.step import train_step

MODELS = {
    "xception_lite": {"middle_depth": 1},
    "mobilenet_v2": {},
    "efficientnet_v2_b0": {},
    "mobilevit_xxs": {},
}


def _batch(n=8, res=32):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, res, res, generator=g), torch.randint(0, 4, (n,), generator=g)


def _grads(name, *, prepare=None, micro=None, precision="fp32", train=True, res=32, fmt=None):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, dropout=0.0, **MODELS[name])
    if prepare:
        prepare(model)
    x, y = _batch(res=res)
    if fmt is not None:
        model = model.to(memory_format=fmt)
        x = x.to(memory_format=fmt)
    model.train(train)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # a step that changes nothing
    torch.manual_seed(123)  # the same stochastic depth draws in every variant
    accel = Accelerator(precision=precision)
    loss, _ = train_step(model, opt, x, y, micro_batch=micro or len(y), accel=accel)
    grads = {k.replace(".block.", "."): p.grad.clone() for k, p in model.named_parameters()}
    return loss, grads, plain_state_dict(model)


def _assert_close(a, b, rtol):
    # relative to each tensor's gradient, with a floor: a conv bias followed by BatchNorm has a
    # gradient that is zero up to rounding, where a relative error means nothing
    assert a.keys() == b.keys()
    floor = 1e-4 * max(g.norm().item() for g in b.values())
    for k in a:
        diff = (a[k] - b[k]).norm().item()
        assert diff <= rtol * max(b[k].norm().item(), floor), f"{k}: differs by {diff:.2e}"


@pytest.mark.parametrize("name", list(MODELS))
def test_checkpointing_same_gradients_and_bn_updated_once(name):
    loss0, g0, s0 = _grads(name)
    loss1, g1, s1 = _grads(name, prepare=enable_checkpointing)
    assert loss1 == pytest.approx(loss0, rel=1e-6)
    _assert_close(g1, g0, 1e-4)
    for k in s0:
        if "running" in k:  # recomputation in backward must not update BatchNorm twice
            torch.testing.assert_close(s1[k], s0[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(MODELS))
def test_micro_batches_same_gradients_with_frozen_batchnorm(name):
    # with BatchNorm in eval mode (fixed statistics), accumulation over 4 micro-batches of 2 must
    # give the gradients of one batch of 8
    loss0, g0, _ = _grads(name, train=False)
    loss1, g1, _ = _grads(name, train=False, micro=2)
    assert loss1 == pytest.approx(loss0, rel=1e-5)
    _assert_close(g1, g0, 1e-4)


def test_micro_batches_change_batchnorm_statistics_in_train_mode():
    # what the record reports: in train mode BatchNorm normalises each micro-batch by its own
    # statistics, so the gradients are those of a different computation
    _, g0, _ = _grads("xception_lite")
    _, g1, _ = _grads("xception_lite", micro=2)
    err = max(((g1[k] - g0[k]).norm() / (g0[k].norm() + 1e-12)).item() for k in g0)
    assert err > 1e-3


# Layout and precision change the order and width of the arithmetic. They are compared with
# BatchNorm on fixed statistics: in train mode, a freshly initialised net's BatchNorm over a batch
# of 8 tiny feature maps divides by near-zero variances and turns 1e-7 rounding differences into
# percent-level gradient differences, which would test BatchNorm's conditioning, not the mode.


@pytest.mark.parametrize("name", list(MODELS))
def test_channels_last_same_gradients(name):
    _, g0, _ = _grads(name, train=False)
    _, g1, _ = _grads(name, train=False, fmt=torch.channels_last)
    _assert_close(g1, g0, 1e-4)


@pytest.mark.parametrize("name", list(MODELS))
def test_inplace_off_same_gradients(name):
    _, g0, _ = _grads(name)
    _, g1, _ = _grads(name, prepare=lambda m: set_inplace_activations(m, False))
    _assert_close(g1, g0, 1e-6)


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bf16")
@pytest.mark.parametrize("name", ["xception_lite", "mobilenet_v2"])
def test_bf16_gradients_within_bf16_tolerance(name):
    loss0, g0, _ = _grads(name, train=False)
    loss1, g1, _ = _grads(name, train=False, precision="bf16")
    assert loss1 == pytest.approx(loss0, rel=1e-2)
    total0 = torch.cat([g.flatten() for g in g0.values()])
    total1 = torch.cat([g1[k].flatten() for k in g0])
    cos = torch.nn.functional.cosine_similarity(total0, total1, dim=0)
    assert cos > 0.99  # bf16 keeps 8 mantissa bits: ~0.4 % per rounding
    assert (total1 - total0).norm() / total0.norm() < 0.1


def _step_and_diff(scope):
    torch.manual_seed(0)
    model = create_model("xception_lite", num_classes=4, **MODELS["xception_lite"])
    frozen = apply_train_scope(model, scope)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    set_train_mode(model, frozen)
    x, y = _batch()
    train_step(model, opt, x, y, micro_batch=8, accel=Accelerator())
    after = model.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}, model


def test_head_scope_updates_only_the_head():
    changed, _ = _step_and_diff("head")
    # the head's weights, nothing else, not even BatchNorm statistics of the frozen backbone
    assert changed == {"head.fc.weight", "head.fc.bias"}


def test_bias_scope_updates_biases_norms_and_head():
    changed, model = _step_and_diff("bias")
    assert "head.fc.weight" in changed
    assert all(
        k.endswith(("bias", "weight", "running_mean", "running_var", "num_batches_tracked"))
        for k in changed
    )
    weights = {k for k, p in model.named_parameters() if k.endswith("weight")}
    conv_weights = {k for k in weights if "depthwise" in k or "pointwise" in k}
    assert conv_weights and not (conv_weights & changed)  # no conv kernel moved
    assert any(k.endswith("pointwise.bias") for k in changed)


def test_last_n_scope():
    changed, model = _step_and_diff("last:2")
    names = [n for n, _ in model.backbone.named_children()]
    trained = {f"backbone.{n}." for n in names[-2:]}
    assert changed
    assert all(k.startswith("head.") or any(k.startswith(t) for t in trained) for k in changed)
    with pytest.raises(EdgeTrainError, match="more blocks"):
        apply_train_scope(create_model("mobilenet_v2", num_classes=3), "last:999")
    with pytest.raises(EdgeTrainError, match="train scope"):
        apply_train_scope(create_model("mobilenet_v2", num_classes=3), "some")


def test_init_weights_new_head_and_mismatched_backbone(tmp_path):
    from edgetrain.train.checkpoint import save_checkpoint

    src = create_model("mobilenet_v2", num_classes=101)
    save_checkpoint(tmp_path / "checkpoint.pt", {"model": src.state_dict()})
    dst = create_model("mobilenet_v2", num_classes=6)
    info = load_init_weights(dst, str(tmp_path))
    assert info["reinitialised"] == 2  # the 6-class head's weight and bias
    torch.testing.assert_close(
        dst.state_dict()["backbone.stem.0.weight"], src.state_dict()["backbone.stem.0.weight"]
    )
    with pytest.raises(EdgeTrainError, match="do not fit this model's backbone"):
        load_init_weights(create_model("efficientnet_v2_b0", num_classes=6), str(tmp_path))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(EdgeTrainError, match="cannot load checkpoint"):
        load_init_weights(dst, str(tmp_path / "bad.pt"))
