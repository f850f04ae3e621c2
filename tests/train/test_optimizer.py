"""The optimizer a run builds: fused Adam where PyTorch has one, the same updates as its
per-tensor loop, and a checkpoint of either kind resumes."""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgetrain.train import RunConfig
from edgetrain.train.step import make_optimizer


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 6 * 6, 4))  # fmt: skip


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int = 5) -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(4, 3, 8, 8, generator=gen), torch.randint(0, 4, (4,), generator=gen)
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_adam_is_fused_and_updates_as_the_per_tensor_loop():
    config = RunConfig(model="xception_lite", data="synthetic-pcb", weight_decay=1e-4)
    fused_net, loop_net = _net(), _net()
    fused = make_optimizer(list(fused_net.parameters()), config)
    assert fused.param_groups[0]["fused"] is True
    loop = torch.optim.Adam(loop_net.parameters(), lr=config.lr, weight_decay=1e-4, foreach=False)
    _train(fused_net, fused)
    _train(loop_net, loop)
    start = list(_net().parameters())
    assert any(not torch.equal(a, s) for a, s in zip(fused_net.parameters(), start, strict=True))
    # the fused kernel rounds differently (vectorised, FMA); Adam's normalised step m / sqrt(v)
    # magnifies that where a gradient is near zero, so allow 5 % of one step's size (lr)
    for a, b in zip(fused_net.parameters(), loop_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0.05 * config.lr)


def test_a_per_tensor_checkpoint_resumes_into_the_fused_optimizer():
    """A run checkpointed before the optimizer was fused resumes: same state layout, and the
    saved param group keeps that run's implementation."""
    config = RunConfig(model="xception_lite", data="synthetic-pcb")
    old_net = _net()
    old = torch.optim.Adam(old_net.parameters(), lr=config.lr, foreach=False)
    _train(old_net, old, steps=2)
    new_net = _net()
    new_net.load_state_dict(old_net.state_dict())
    resumed = make_optimizer(list(new_net.parameters()), config)
    resumed.load_state_dict(copy.deepcopy(old.state_dict()))  # as if read from the checkpoint
    _train(new_net, resumed, steps=2)
    _train(old_net, old, steps=2)
    for a, b in zip(new_net.parameters(), old_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
