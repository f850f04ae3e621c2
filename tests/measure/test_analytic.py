"""The analytic footprint against hand-computed byte counts, storage dedup, and side effects.

The expected numbers are worked out by hand from what autograd saves (checked against PyTorch
2.13's saved-tensor hooks). If PyTorch changes what an op saves, these tests say so.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgetrain.measure import (
    Footprint,
    SavedTensorsCounter,
    analytic_footprint,
    footprint_from,
    grads_bytes,
    optimizer_state_bytes,
    storage_bytes,
    weights_bytes,
)

F32, I64 = 4, 8  # bytes per element
B = 5  # batch


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(B, 4, generator=g), torch.randint(0, 2, (B,), generator=g)


# Linear(4,3) -> ReLU -> Linear(3,2), float32:
WEIGHTS = (4 * 3 + 3 + 3 * 2 + 2) * F32  # W1, b1, W2, b2 = 92
GRADS = WEIGHTS  # one dense float32 gradient per parameter
SAVED = (
    B
    * 4
    * F32  # x: Linear1's addmm saves its input for W1's gradient (W1ᵀ is not saved: x needs no grad)
    + B
    * 3
    * F32  # ReLU output: ReluBackward saves its result, Linear2's addmm saves the same storage -> once
    + B
    * 2
    * F32  # log_softmax output: saved by LogSoftmaxBackward and again by NllLossBackward -> once
    + B * I64  # targets: nll_loss saves them (int64)
    + 1 * F32  # total_weight: the 0-dim float32 count nll_loss saves for its mean reduction
)  # = 224
EXCLUDED = 3 * 2 * F32  # W2ᵀ: Linear2's addmm saves it for the grad of its input; a view of W2 = 24


@pytest.mark.parametrize(
    ("make_opt", "optimizer_bytes"),
    [
        # SGD with momentum: one momentum buffer per parameter.
        (lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), WEIGHTS),
        # Adam: exp_avg and exp_avg_sq per parameter + a 0-dim float32 `step` per parameter (4).
        (lambda ps: torch.optim.Adam(ps, lr=1e-3), 2 * WEIGHTS + 4 * F32),
    ],
    ids=["sgd_momentum", "adam"],
)
def test_mlp_footprint_equals_hand_count(make_opt, optimizer_bytes):
    model = mlp()
    x, y = batch()
    fp = analytic_footprint(model, make_opt(model.parameters()), x, y, step=True)
    assert fp == Footprint(
        weights_bytes=WEIGHTS,
        grads_bytes=GRADS,
        optimizer_bytes=optimizer_bytes,
        saved_activations_bytes=SAVED,
        saved_excluded_bytes=EXCLUDED,
        saved_tensors=8,  # x, relu out x2, W2ᵀ, log_softmax out x2, targets, total_weight
        saved_storages=5,
        optimizer_state_ready=True,
    )
    assert fp.total_bytes == WEIGHTS + GRADS + optimizer_bytes + SAVED
    assert fp.above_weights_bytes == fp.total_bytes - WEIGHTS


def test_to_dict_units():
    model = mlp()
    fp = analytic_footprint(model, torch.optim.Adam(model.parameters()), *batch(), step=True)
    d = fp.to_dict()
    assert d["total_mb"] == fp.total_bytes / 2**20
    for key in ("weights_mb", "grads_mb", "optimizer_mb", "saved_activations_mb", "total_mb"):
        assert d[key] == getattr(fp, key)
    assert d["total_mb"] == pytest.approx(
        d["weights_mb"] + d["grads_mb"] + d["optimizer_mb"] + d["saved_activations_mb"]
    )


def test_conv_bn_relu_inplace_hand_count():
    # Conv(3->4, 3x3, no bias) -> BatchNorm(4) -> ReLU(inplace), input (2, 3, 6, 6), loss = sum.
    n, c_in, c, hw = 2, 3, 4, 6 * 6
    saved = (
        n * c_in * hw * F32  # x: conv saves its input (for the weight's gradient)
        + n * c * hw * F32  # conv output: BatchNorm saves its input
        + 2 * c * F32  # BatchNorm's batch mean and inverse std (save_mean, save_invstd)
        + n * c * hw * F32  # BN output, overwritten in place by ReLU, which saves its result
    )
    excluded = (
        c * c_in * 9 * F32  # conv weight
        + 3 * c * F32  # BN weight, running_mean, running_var (params and buffers: in weights)
    )
    for inplace in (True, False):
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace)
        )
        x = torch.randn(n, c_in, 6, 6)
        fp = analytic_footprint(
            model, torch.optim.SGD(model.parameters(), lr=0.1), x, x, lambda out, _: out.sum()
        )
        # Not in place, ReLU still saves only its output: BN's output is freed, same bytes.
        assert (fp.saved_activations_bytes, fp.saved_excluded_bytes) == (saved, excluded), inplace
        assert fp.weights_bytes == (c * c_in * 9 + 2 * c) * F32 + 2 * c * F32 + I64  # + BN stats
        assert fp.grads_bytes == (c * c_in * 9 + 2 * c) * F32


class SaveTwice(torch.autograd.Function):
    """y = a * w; saves `a` three times: itself, a view and a slice (one storage)."""

    @staticmethod
    def forward(ctx, a, w):
        ctx.save_for_backward(a, a.view(-1), a[:1], w)
        return a * w

    @staticmethod
    def backward(ctx, grad):
        a, _, _, w = ctx.saved_tensors
        return grad * w, (grad * a).sum()


def test_shared_storages_are_counted_once():
    w = nn.Parameter(torch.tensor(2.0))
    a = torch.randn(10, 10, requires_grad=True)
    with SavedTensorsCounter([w]) as saved:
        big = a.exp()  # exp saves its result: 400 bytes
        SaveTwice.apply(big, w).sum()
    assert saved.n_tensors == 5
    assert saved.n_storages == 1
    assert saved.saved_bytes == 10 * 10 * F32  # the slice costs the whole storage, once
    assert saved.excluded_bytes == F32  # w
    with pytest.raises(RuntimeError, match="one forward"):
        saved.__enter__()


def test_storage_helpers():
    t = torch.zeros(8, 8)
    assert storage_bytes([t, t[2:], t.view(-1), t.t()]) == 64 * F32
    tied = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    tied[1].weight = tied[0].weight  # one Parameter in two modules
    assert weights_bytes(tied) == 10 * 4 * F32
    model = mlp()
    model[0].weight.requires_grad_(False)  # frozen: no gradient expected
    assert grads_bytes(model) == GRADS - 4 * 3 * F32  # none exist yet: counted as they will be
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    assert optimizer_state_bytes(opt) == 0  # created lazily by the first step


def test_without_step_nothing_changes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Dropout(0.5), nn.Linear(3, 2))
    opt = torch.optim.Adam(model.parameters())
    x, y = batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    fp = analytic_footprint(model, opt, x, y)
    assert not fp.optimizer_state_ready and fp.optimizer_bytes == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats too
    assert torch.equal(torch.get_rng_state(), rng)  # dropout's draws given back
    assert all(p.grad is None for p in model.parameters())
    assert not opt.state
    # Existing gradients are put back untouched, not accumulated into.
    model(x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    analytic_footprint(model, opt, x, y)
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters(), strict=True))


def test_counter_inside_a_training_loop_matches():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = batch()
    with SavedTensorsCounter(model) as saved:
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    fp = footprint_from(model, opt, saved)
    assert (fp.saved_activations_bytes, fp.optimizer_bytes, fp.grads_bytes) == (
        SAVED,
        WEIGHTS,
        GRADS,
    )


def test_meta_device_gives_the_same_count():
    model = mlp().to("meta")
    x, y = (t.to("meta") for t in batch())
    fp = analytic_footprint(model, torch.optim.Adam(model.parameters()), x, y, step=True)
    assert (fp.saved_activations_bytes, fp.saved_excluded_bytes) == (SAVED, EXCLUDED)
    assert fp.total_bytes == WEIGHTS + GRADS + 2 * WEIGHTS + 4 * F32 + SAVED
