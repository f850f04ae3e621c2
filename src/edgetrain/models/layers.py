"""Small building blocks shared by the model families, and the paper's classification head."""

from __future__ import annotations

import torch
from torch import nn

# Keras BatchNormalization defaults are momentum 0.99 (PyTorch: 1 - 0.99 = 0.01) and eps 1e-3.
# The Keras applications override them per family; each family passes its own values.


def bn(channels: int, *, eps: float = 1e-3, momentum: float = 0.01) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=eps, momentum=momentum)


def same_padding(kernel: int, dilation: int = 1) -> int:
    """Symmetric padding that keeps the size at stride 1 ("same" for odd kernels)."""
    return dilation * (kernel - 1) // 2


class ConvBNAct(nn.Sequential):
    """conv(k, stride) -> BN -> activation (None: no activation)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 3,
        stride: int = 1,
        *,
        groups: int = 1,
        bias: bool = False,
        act: type[nn.Module] | None = nn.ReLU,
        padding: int | None = None,
        eps: float = 1e-3,
        momentum: float = 0.01,
    ) -> None:
        pad = same_padding(kernel) if padding is None else padding
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=bias),
            bn(cout, eps=eps, momentum=momentum),
        ]
        if act is not None:
            layers.append(act(inplace=True) if act in _INPLACE_OK else act())
        super().__init__(*layers)


_INPLACE_OK = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation as Keras EfficientNet builds it: GAP -> 1x1 conv (bias) -> act ->
    1x1 conv (bias) -> sigmoid, multiplied onto the input."""

    def __init__(self, channels: int, squeeze: int, act: type[nn.Module] = nn.SiLU) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.act = act()
        self.expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        s = torch.sigmoid(self.expand(self.act(self.reduce(s))))
        return x * s


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample (Keras: Dropout with
    noise_shape (None, 1, 1, 1)), scaled so the expectation is unchanged."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ClassifierHead(nn.Module):
    """The paper's head for every model: global average pool -> dropout -> linear."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean((2, 3))  # (B, C, H, W) -> (B, C)
        return self.fc(self.dropout(x))


class Classifier(nn.Module):
    """A backbone (image -> feature map) with the paper's head on top.

    Every registered model is one of these, so training code can find the head (`.head`), the
    backbone blocks (the children of `.backbone`, an nn.Sequential) and the spec (`.spec`) the same way for all families.
    """

    def __init__(self, backbone: nn.Module, features: int, num_classes: int, dropout: float, spec):
        super().__init__()
        self.backbone = backbone
        self.head = ClassifierHead(features, num_classes, dropout)
        self.spec = spec
        self.num_features = features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
