"""The zero-cost signals against values computed by hand on toy networks."""

from __future__ import annotations

import math

import torch
from torch import nn

from edgetrain.models import create_model
from edgetrain.search.signals import grad_norm, naswot, synflow_log10, zero_cost_signals


def _linear(weight: list[list[float]], bias: list[float] | None = None) -> nn.Linear:
    w = torch.tensor(weight)
    layer = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(w)
        if bias is not None:
            layer.bias.copy_(torch.tensor(bias))
    return layer


def test_grad_norm_by_hand() -> None:
    # zero weights: logits 0, softmax (0.5, 0.5); dCE/dlogits = p - onehot(0) = (-0.5, 0.5);
    # dW = (p - y) x^T = [[-0.5, -1], [0.5, 1]], whose L2 norm is sqrt(2.5)
    net = _linear([[0.0, 0.0], [0.0, 0.0]])
    got = grad_norm(net, torch.tensor([[1.0, 2.0]]), torch.tensor([0]))
    assert math.isclose(got, math.sqrt(2.5), rel_tol=1e-6)


def test_synflow_by_hand_and_the_model_is_untouched() -> None:
    # |W1| = [[1, 2], [3, 0.5]], |W2| = [[1, 2]]; ones in: h = (3, 3.5), R = 3 + 7 = 10.
    # R is linear in each layer's weights, so each layer's sum of theta * dR/dtheta is R: 2R = 20
    net = nn.Sequential(_linear([[1.0, -2.0], [3.0, 0.5]]), nn.ReLU(), _linear([[-1.0, 2.0]]))
    before = [p.clone() for p in net.parameters()]
    assert math.isclose(synflow_log10(net, (2,)), math.log10(20.0), rel_tol=1e-9)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_naswot_by_hand() -> None:
    # units pre-activation (x, 0.5 - x): x = 1 -> code 10, x = -1 -> 01, x = 0.25 -> 11;
    # K = units - Hamming = [[2, 0, 1], [0, 2, 1], [1, 1, 2]], det = 2*3 - 0 + 1*(0 - 2) = 4
    net = nn.Sequential(_linear([[1.0], [-1.0]], [0.0, 0.5]), nn.ReLU())
    got = naswot(net, torch.tensor([[1.0], [-1.0], [0.25]]))
    assert math.isclose(got, math.log(4.0), rel_tol=1e-9)


def test_signals_of_a_zoo_model_are_finite_and_deterministic() -> None:
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", num_classes=3)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    first = zero_cost_signals(model, images, labels)
    assert set(first) == {"grad_norm", "synflow_log10", "naswot"}
    assert all(math.isfinite(v) for v in first.values()), first
    again = zero_cost_signals(model, images, labels)
    assert all(math.isclose(again[k], v, rel_tol=1e-5) for k, v in first.items()), (again, first)
