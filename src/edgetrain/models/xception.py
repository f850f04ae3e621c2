"""The Xception family as data: one spec, one builder.

`xception` (Chollet 2017, as Keras applications builds it) and `xception_lite` (Mih et al. 2024:
3x3 -> 1x1 separable convolutions and narrower channels) are two registered values of
`XceptionSpec`; the architecture search samples other values of the same spec.

Layer semantics follow Keras: a separable conv is depthwise kxk (no bias) + pointwise 1x1 (bias
if the block says so), every separable conv is followed by BatchNorm (eps 1e-3), max-pools are
3x3 stride 2 "same".
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
from torch import nn

from edgetrain.errors import EdgeTrainError
from edgetrain.models.layers import bn
from edgetrain.models.registry import register_family, register_spec
from edgetrain.models.spec import (
    MAX_DEPTH,
    MAX_KERNEL,
    MAX_WIDTH,
    ModelSpec,
    check_range,
    short_repr,
)

Padding = Literal["same", "valid"]
Residual = Literal["none", "identity", "conv1x1", "conv1x1_bn", "conv3x3", "conv3x3_bn"]
_RESIDUALS = get_args(Residual)
_PADDINGS = get_args(Padding)


@dataclass(frozen=True)
class SepConv:
    """One separable convolution: depthwise `kernel` x `kernel`, then pointwise to `width`."""

    kernel: int
    width: int


@dataclass(frozen=True)
class Block:
    """[ReLU] -> [squeeze 1x1] -> SepConv -> BN (-> ReLU -> SepConv -> BN)* -> [max-pool] (+ residual)
    -> [ReLU].

    With `pool` the block halves the resolution and a projection residual (`conv*`) has stride 2.
    """

    convs: tuple[SepConv, ...]
    residual: Residual = "identity"
    pool: bool = False  # max-pool 3x3 stride 2 at the end of the main path
    bias: bool = False  # bias in the pointwise convs, the squeeze conv and the residual conv
    relu_first: bool = True  # ReLU before the first conv (Keras Xception's first block has none)
    relu_last: bool = False  # ReLU after the last BN (the tail)
    squeeze: int | None = None  # SqueezeNet-style 1x1 squeeze width before the convs; None: off


@dataclass(frozen=True)
class XceptionSpec(ModelSpec):
    """A whole Xception-family backbone. Widths are output channels."""

    family = "xception"
    _title = "Xception"
    _id_prefix = "xc"

    stem: tuple[int, ...] = (32, 64)  # conv3x3 widths, the first with stride 2, each -> BN -> ReLU
    stem_bias: bool = False
    stem_padding: Padding = "valid"  # Keras Xception's stem uses "valid"
    entry: tuple[Block, ...] = ()
    middle: Block = field(default_factory=lambda: Block(convs=(SepConv(3, 728),) * 3))
    middle_depth: int = 8  # the middle block is repeated this many times
    exit: tuple[Block, ...] = ()
    tail: Block = field(
        default_factory=lambda: Block(
            convs=(SepConv(3, 1536), SepConv(3, 2048)),
            residual="none",
            relu_first=False,
            relu_last=True,
        )
    )

    def describe(self) -> str:
        """A compact human-readable form, e.g. `s32.64|e128:1.3|m8x256:1,512:1,512:3|...`."""

        def blk(b: Block) -> str:
            convs = ",".join(f"{c.width}:{c.kernel}" for c in b.convs)
            sq = f"q{b.squeeze}/" if b.squeeze else ""
            return f"{sq}{convs}{'P' if b.pool else ''}[{b.residual}]"

        return "|".join(
            [
                "s" + ".".join(map(str, self.stem)),
                "e" + ";".join(blk(b) for b in self.entry),
                f"m{self.middle_depth}x" + blk(self.middle),
                "x" + ";".join(blk(b) for b in self.exit),
                "t" + blk(self.tail),
            ]
        )

    # --- checks ------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise `EdgeTrainError` if the spec cannot be built. The counts are bounded first
        (`MAX_*` in spec.py), so nothing below iterates over a hostile number."""
        if not self.stem:
            raise EdgeTrainError("stem needs at least one positive width")
        for w in self.stem:
            check_range(w, 1, MAX_WIDTH, "stem width")
        if self.stem_padding not in _PADDINGS:
            raise EdgeTrainError(f"stem_padding must be one of {_PADDINGS}")
        check_range(self.middle_depth, 0, MAX_DEPTH, "middle_depth")
        _check_convs("middle", self.middle)  # bounded even when middle_depth is 0
        cin = self.stem[-1]
        for where, b in self._blocks():
            _check_block(where, b, cin)
            cin = b.convs[-1].width

    def _blocks(self) -> list[tuple[str, Block]]:
        out = [(f"entry{i + 1}", b) for i, b in enumerate(self.entry)]
        out += [(f"middle{i + 1}", self.middle) for i in range(self.middle_depth)]
        out += [(f"exit{i + 1}", b) for i, b in enumerate(self.exit)]
        out.append(("tail", self.tail))
        return out

    @property
    def num_features(self) -> int:
        return self.tail.convs[-1].width


def _check_block(where: str, b: Block, cin: int) -> None:
    """One block where it runs: its own fields, and a residual that fits its input width."""
    _check_convs(where, b)
    cout = b.convs[-1].width
    if b.residual == "identity" and (cin != cout or b.pool):
        raise EdgeTrainError(
            f"{where}: an identity residual needs equal in/out widths and no pool "
            f"(in {cin}, out {cout}, pool {b.pool}); use a conv residual"
        )


def _check_convs(where: str, b: Block) -> None:
    if not b.convs:
        raise EdgeTrainError(f"{where}: a block needs at least one separable conv")
    if b.residual not in _RESIDUALS:
        raise EdgeTrainError(f"{where}: residual must be one of {_RESIDUALS}")
    for c in b.convs:
        if c.kernel % 2 == 0 or not (1 <= c.kernel <= MAX_KERNEL and 1 <= c.width <= MAX_WIDTH):
            raise EdgeTrainError(
                f"{where}: separable convs need an odd kernel in 1..{MAX_KERNEL} and a width in "
                f"1..{MAX_WIDTH}, got {short_repr(c)}"
            )
    if b.squeeze is not None:
        check_range(b.squeeze, 1, MAX_WIDTH, f"{where}: squeeze width (or None)")


# --- the builder -------------------------------------------------------------------------------


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D: depthwise kxk without bias, then pointwise 1x1 (optional bias)."""

    def __init__(self, cin: int, cout: int, kernel: int, bias: bool) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, kernel, padding=kernel // 2, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionBlock(nn.Module):
    def __init__(self, cin: int, b: Block) -> None:
        super().__init__()
        cout = b.convs[-1].width
        layers: list[nn.Module] = []
        if b.relu_first:
            # not in-place: the block's input is also its residual
            layers.append(nn.ReLU(inplace=False))
        c = cin
        if b.squeeze:
            layers += [
                nn.Conv2d(c, b.squeeze, 1, bias=b.bias),
                bn(b.squeeze),
                nn.ReLU(inplace=True),
            ]
            c = b.squeeze
        for i, conv in enumerate(b.convs):
            if i > 0:
                layers.append(nn.ReLU(inplace=True))
            layers += [SeparableConv2d(c, conv.width, conv.kernel, b.bias), bn(conv.width)]
            c = conv.width
        if b.pool:
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.main = nn.Sequential(*layers)
        stride = 2 if b.pool else 1
        self.residual_kind = b.residual
        if b.residual in ("none", "identity"):
            self.shortcut = None
        else:
            k = 3 if b.residual.startswith("conv3x3") else 1
            proj: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=b.bias)]
            if b.residual.endswith("_bn"):
                proj.append(bn(cout))
            self.shortcut = nn.Sequential(*proj)
        self.relu_last = nn.ReLU(inplace=True) if b.relu_last else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.main(x)
        if self.residual_kind == "identity":
            y = y + x
        elif self.shortcut is not None:
            y = y + self.shortcut(x)
        if self.relu_last is not None:
            y = self.relu_last(y)
        return y


@register_family(XceptionSpec)
def build_xception_backbone(spec: XceptionSpec) -> nn.Sequential:
    """Turn any valid `XceptionSpec` into an nn.Sequential of blocks: (B, 3, H, W) -> (B, C, h, w)."""
    spec.validate()
    stem: list[nn.Module] = []
    cin = 3
    for i, w in enumerate(spec.stem):
        pad = 1 if spec.stem_padding == "same" else 0
        stem += [
            nn.Conv2d(cin, w, 3, stride=2 if i == 0 else 1, padding=pad, bias=spec.stem_bias),
            bn(w),
            nn.ReLU(inplace=True),
        ]
        cin = w
    modules: OrderedDict[str, nn.Module] = OrderedDict(stem=nn.Sequential(*stem))
    for name, b in spec._blocks():
        modules[name] = XceptionBlock(cin, b)
        cin = b.convs[-1].width
    return nn.Sequential(modules)


# --- the registered values -----------------------------------------------------------------------


def _entry(width: int, kernels: tuple[int, int], **kw: Any) -> Block:
    return Block(convs=(SepConv(kernels[0], width), SepConv(kernels[1], width)), pool=True, **kw)


XCEPTION = XceptionSpec(
    stem=(32, 64),
    stem_bias=False,
    stem_padding="valid",
    entry=(
        _entry(128, (3, 3), residual="conv1x1_bn", relu_first=False),
        _entry(256, (3, 3), residual="conv1x1_bn"),
        _entry(728, (3, 3), residual="conv1x1_bn"),
    ),
    middle=Block(convs=(SepConv(3, 728),) * 3, residual="identity"),
    middle_depth=8,
    exit=(
        Block(
            convs=(SepConv(3, 728), SepConv(3, 1024)),
            residual="conv1x1_bn",
            pool=True,
        ),
    ),
    tail=Block(
        convs=(SepConv(3, 1536), SepConv(3, 2048)),
        residual="none",
        relu_first=False,
        relu_last=True,
    ),
)

XCEPTION_LITE = XceptionSpec(
    stem=(32, 64),
    stem_bias=True,
    stem_padding="same",
    entry=tuple(_entry(w, (1, 3), residual="conv1x1", bias=True) for w in (128, 256, 512)),
    middle=Block(
        convs=(SepConv(1, 256), SepConv(1, 512), SepConv(3, 512)), residual="identity", bias=True
    ),
    middle_depth=8,
    exit=(
        Block(convs=(SepConv(1, 728), SepConv(3, 1024)), residual="conv3x3", pool=True, bias=True),
    ),
    tail=Block(
        convs=(SepConv(3, 1536), SepConv(3, 2048)),
        residual="none",
        bias=True,
        relu_first=False,
        relu_last=True,
    ),
)

XCEPTION_SPECS: dict[str, XceptionSpec] = {"xception": XCEPTION, "xception_lite": XCEPTION_LITE}


register_spec("xception", XCEPTION, "Xception (Chollet 2017) as Keras applications defines it.")
register_spec(
    "xception_lite",
    XCEPTION_LITE,
    """Xception-Lite (Mih et al. 2024): 1x1 separable convs where Xception has 3x3, narrower.""",
)
