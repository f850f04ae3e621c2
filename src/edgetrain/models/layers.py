"""Building blocks shared by the model families, the backbone frame and the paper's head."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import torch
from torch import nn

from edgetrain.models.spec import ModelSpec

# Keras BatchNormalization defaults are momentum 0.99 (PyTorch: 1 - 0.99 = 0.01) and eps 1e-3.
# The Keras applications override them per family; each family passes its own values.


def bn(channels: int, *, eps: float = 1e-3, momentum: float = 0.01) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=eps, momentum=momentum)


def make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """Keras/TF-slim `_make_divisible`: round `v` to the nearest multiple of `divisor`, at least
    `min_value` (default `divisor`), and never more than 10 % below `v`."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


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


class InvertedResidual(nn.Module):
    """[expand 1x1 -> BN -> act] -> depthwise kxk (stride) -> BN -> act -> project 1x1 -> BN
    (linear bottleneck), plus the input when stride is 1 and in == out.

    MobileNetV2's block, and MobileViT's MV2 block, which differs only in activation, BN constants
    and how the hidden width is rounded (`hidden`).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        *,
        expand: int,
        stride: int = 1,
        kernel: int = 3,
        hidden: int | None = None,
        act: type[nn.Module] = nn.ReLU6,
        eps: float = 1e-3,
        momentum: float = 0.001,
    ) -> None:
        super().__init__()
        hidden = cin * expand if hidden is None else hidden
        bn_kw = {"eps": eps, "momentum": momentum}
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNAct(cin, hidden, 1, act=act, **bn_kw))
        layers += [
            ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=act, **bn_kw),
            ConvBNAct(hidden, cout, 1, act=None, **bn_kw),
        ]
        # The first layer is a conv, so the in-place activations never touch the block input
        # (the residual), and a recomputed block (activation checkpointing) sees the same input.
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.residual else y


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


def stem_blocks_top(
    stem: int,
    blocks: Iterable[tuple[str, nn.Module, int]],
    top: int,
    *,
    act: type[nn.Module],
    eps: float,
    momentum: float,
) -> nn.Sequential:
    """The frame of the MobileNetV2 / EfficientNetV2 / MobileViT backbones: `stem` (Conv3x3 stride 2
    from RGB -> BN -> act), the `blocks`, `top` (Conv1x1 -> BN -> act); one child per block.

    `blocks` yields (child name, block, block output width) and should be a generator: it is
    consumed after the stem is made, so modules are created (and, under a seed, initialised) in
    forward order.
    """
    bn_kw = {"eps": eps, "momentum": momentum}
    modules: OrderedDict[str, nn.Module] = OrderedDict(
        stem=ConvBNAct(3, stem, 3, 2, act=act, **bn_kw)
    )
    cin = stem
    for name, block, cout in blocks:
        modules[name] = block
        cin = cout
    modules["top"] = ConvBNAct(cin, top, 1, act=act, **bn_kw)
    return nn.Sequential(modules)


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
    backbone blocks (the children of `.backbone`, an nn.Sequential) and the spec (`.spec`) the same
    way for all families.
    """

    def __init__(
        self, backbone: nn.Module, features: int, num_classes: int, dropout: float, spec: ModelSpec
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = ClassifierHead(features, num_classes, dropout)
        self.spec = spec
        self.num_features = features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
