"""Zero-cost signals: scores of an untrained network, computed at initialisation in about a
second, that may rank architectures before any of them is trained.

Each is written from its paper's definition:

- `grad_norm` (Abdelfattah et al., 2021, "Zero-Cost Proxies for Lightweight NAS"): the sum over
  parameter tensors of the L2 norm of the cross-entropy loss's gradient on one batch.
- `synflow_log10` (Tanaka et al., 2020, "Pruning neural networks without any data by iteratively
  conserving synaptic flow"; used as a NAS proxy by Abdelfattah et al.): with every parameter
  replaced by its absolute value, R = sum of the network's output for an all-ones input, and the
  score is sum |theta * dR/dtheta| over all parameters. Computed in float64 with batch norm in
  eval mode (at initialisation its running statistics are 0 and 1, so it is the affine map the
  paper's batch-norm-free networks have), given as log10 because it grows exponentially with
  depth.
- `naswot` (Mellor et al., 2021, "Neural Architecture Search without Training"): for a batch of
  N images, each image's binary code is which units of every activation are positive; with
  K[i, j] = (units) - Hamming(code_i, code_j), the score is log |det K|. Defined for ReLU; for
  SiLU, GELU, ReLU6 and hard-swish "positive output" is the same test (each is > 0 exactly where
  its input is).

None of them touches the caller's model: each works on a copy, with dropout off.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

# activations whose output is > 0 exactly where their input is, so "unit active" = "output > 0"
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.LeakyReLU)


def _train_copy(model: nn.Module) -> nn.Module:
    """A copy in train mode (batch statistics, as the papers score) with dropout off, so a
    score is a function of the architecture and its initial weights alone."""
    net = copy.deepcopy(model).train()
    for m in net.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()
    return net


def grad_norm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Sum over parameter tensors of ||d CE(model(images), labels) / d theta||_2 (train mode)."""
    net = _train_copy(model)
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(images), labels).backward()
    return float(sum(p.grad.norm() for p in net.parameters() if p.grad is not None))


def synflow_log10(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """log10 of sum |theta * dR/dtheta|, R = sum(net_abs(ones(1, *input_shape))), in float64."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad(set_to_none=True)
    net(torch.ones(1, *input_shape, dtype=torch.float64)).sum().backward()
    with torch.no_grad():
        score = sum(float((p * p.grad).abs().sum()) for p in net.parameters() if p.grad is not None)
    return math.log10(score) if score > 0 else float("-inf")


def naswot(model: nn.Module, images: torch.Tensor) -> float:
    """log |det K| of the activation-code kernel over the batch `images` (train mode)."""
    net = _train_copy(model)
    n = images.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def add_codes(_mod: nn.Module, _inp: object, out: torch.Tensor) -> None:
        # (N, units) codes; agreements = both active + both inactive = units - Hamming distance
        code = (out.detach().reshape(n, -1) > 0).to(torch.float64)
        kernel.add_(code @ code.T + (1 - code) @ (1 - code).T)

    hooks = [
        m.register_forward_hook(add_codes) for m in net.modules() if isinstance(m, _ACTIVATIONS)
    ]
    try:
        with torch.no_grad():
            net(images)
    finally:
        for h in hooks:
            h.remove()
    _sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet)


def zero_cost_signals(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> dict[str, float]:
    """All three scores for one batch (N, C, H, W) and its labels, keyed by name; a score that
    cannot be computed (e.g. a network with no activation for naswot) is NaN, not an error."""
    out: dict[str, float] = {}
    for name, fn in (
        ("grad_norm", lambda: grad_norm(model, images, labels)),
        ("synflow_log10", lambda: synflow_log10(model, tuple(images.shape[1:]))),
        ("naswot", lambda: naswot(model, images)),
    ):
        try:
            out[name] = fn()
        except (RuntimeError, ValueError):
            out[name] = float("nan")
    return out
