"""EfficientNetV2-B0/B1 (Tan & Le 2021) as Keras applications builds them, as data.

`efficientnet_v2_b0` and `efficientnet_v2_b1` are `keras.applications.EfficientNetV2B0/B1` with the
paper's head: stem Conv3x3 stride 2 (no bias) -> BN -> SiLU, six stages of Fused-MBConv / MBConv
blocks, top Conv1x1/round_filters(1280) (no bias) -> BN -> SiLU. B1 is B0 with depth 1.1
(repeats = ceil(1.1 * repeats)); width stays 1.0 and Keras' default input size is 240 instead of
224. With a 101-class head: B0 5,988,085 trainable parameters and 60,608 BatchNorm moving
statistics, B1 6,989,433 and 71,072, Keras' exact counts.

Keras details carried over: BN eps 1e-3 and momentum 0.9 (PyTorch momentum 0.1); `round_filters`
without EfficientNetV1's "not below 90 %" correction; SE width `max(1, int(block_input * se_ratio))`
with biased 1x1 convs; stochastic depth on residual blocks only, at rate
`drop_connect_rate * b / blocks` for the b-th block (from 0), where `blocks` is the number of blocks
*before* depth scaling. That is Keras' own arithmetic: for B0 the rates run 0 .. 0.2 * 20/21, for B1
(27 blocks over a denominator of 21) they reach 0.2 * 26/21 = 0.248. Keras' input preprocessing
(Rescaling + Normalization, no trainable weights) is the data pipeline's job, not the model's.

Padding: every conv here pads kernel // 2 on each side. Keras' "same" pads stride-2 convs
asymmetrically (TensorFlow: on an even input 0 rows/cols on top/left and 1 on bottom/right), so window
i is centred on input pixel 2i + 1 there and on 2i here. Output sizes are identical at every input
size for these odd kernels; only the sampling grid shifts by one pixel, which matters when porting
Keras weights, not for training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from edgetrain.errors import EdgeTrainError
from edgetrain.models.layers import ConvBNAct, DropPath, SqueezeExcite, stem_blocks_top
from edgetrain.models.registry import register_family, register_spec
from edgetrain.models.spec import (
    MAX_BLOCKS,
    MAX_DEPTH,
    MAX_EXPAND,
    MAX_MULTIPLIER,
    MAX_RESOLUTION,
    MAX_STRIDE,
    MAX_WIDTH,
    ModelSpec,
    check_bn,
    check_kernel,
    check_range,
)

BlockKind = Literal["fused", "mbconv"]

# --- the spec ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MBConvStage:
    """One row of Keras' `DEFAULT_BLOCKS_ARGS`: `repeats` blocks of one kind; the first has `stride`
    and `cin` -> `cout`, the others stride 1 and `cout` -> `cout`. Widths are before `width`."""

    kernel: int
    repeats: int  # before the depth multiplier
    cin: int
    cout: int
    expand: int
    se_ratio: float  # 0: no squeeze-excite; else SE width = max(1, int(block input * se_ratio))
    stride: int
    block: BlockKind  # "fused": Fused-MBConv (Keras conv_type 1); "mbconv": MBConv (conv_type 0)


EFFICIENTNET_V2_B_STAGES = (
    MBConvStage(3, 1, 32, 16, 1, 0.0, 1, "fused"),
    MBConvStage(3, 2, 16, 32, 4, 0.0, 2, "fused"),
    MBConvStage(3, 2, 32, 48, 4, 0.0, 2, "fused"),
    MBConvStage(3, 3, 48, 96, 4, 0.25, 2, "mbconv"),
    MBConvStage(3, 5, 96, 112, 6, 0.25, 1, "mbconv"),
    MBConvStage(3, 8, 112, 192, 6, 0.25, 2, "mbconv"),
)


@dataclass(frozen=True)
class BlockArgs:
    """One built block, after width/depth scaling (what `EfficientNetV2Spec.blocks()` yields)."""

    name: str  # Keras' name: block{stage}{a, b, ...}
    kernel: int
    cin: int
    cout: int
    expand: int
    se_ratio: float
    stride: int
    block: BlockKind
    drop_rate: float  # stochastic depth rate (used only if the block has a residual)


@dataclass(frozen=True)
class EfficientNetV2Spec(ModelSpec):
    """A whole EfficientNetV2 backbone; the defaults are Keras' EfficientNetV2B0."""

    family = "efficientnet_v2"
    _title = "EfficientNetV2"
    _id_prefix = "env2"

    width: float = 1.0  # width_coefficient
    depth: float = 1.0  # depth_coefficient: repeats -> ceil(depth * repeats)
    resolution: int = 224  # Keras' default input size; informational, the model runs at any size
    stages: tuple[MBConvStage, ...] = EFFICIENTNET_V2_B_STAGES  # the stem width is stages[0].cin
    top: int = 1280  # top Conv1x1 width, before `width`
    divisor: int = 8  # depth_divisor
    min_depth: int = 8  # smallest rounded width (0: `divisor`)
    drop_connect_rate: float = 0.2  # stochastic depth of the last block (see the module docstring)
    bn_eps: float = 1e-3
    bn_momentum: float = 0.1  # PyTorch convention: Keras momentum 0.9

    def validate(self) -> None:
        """Raise `EdgeTrainError` if the spec cannot be built; every number is bounded
        (`MAX_*` in spec.py), the widths and block counts after scaling too."""
        if not (0 < self.width <= MAX_MULTIPLIER and 0 < self.depth <= MAX_MULTIPLIER):
            raise EdgeTrainError(
                f"width and depth must be > 0 and at most {MAX_MULTIPLIER}, "
                f"got {self.width}, {self.depth}"
            )
        check_range(self.resolution, 1, MAX_RESOLUTION, "resolution")
        check_range(self.top, 1, MAX_WIDTH, "top")
        check_range(self.divisor, 1, MAX_WIDTH, "divisor")
        check_range(self.min_depth, 0, MAX_WIDTH, "min_depth")
        if not 0.0 <= self.drop_connect_rate < 1.0:
            raise EdgeTrainError(
                f"drop_connect_rate must be in [0, 1), got {self.drop_connect_rate}"
            )
        if not self.stages:
            raise EdgeTrainError("an EfficientNetV2 spec needs at least one stage")
        for i, s in enumerate(self.stages):
            _check_stage(f"stage {i + 1}", s, self.stages[i - 1] if i else None)
        blocks = sum(math.ceil(self.depth * s.repeats) for s in self.stages)
        check_range(blocks, 1, MAX_BLOCKS, "blocks in all after depth scaling")
        widths = [self.round_filters(w) for s in self.stages for w in (s.cin, s.cout)]
        check_range(max(*widths, self.num_features), 1, MAX_WIDTH, "the widest layer after width")
        check_bn(self)

    def round_filters(self, filters: int) -> int:
        """Keras EfficientNetV2 `round_filters`: scale by `width`, round to a multiple of
        `divisor` (half up), at least `min_depth`."""
        scaled = filters * self.width
        new = int(scaled + self.divisor / 2) // self.divisor * self.divisor
        return int(max(self.min_depth or self.divisor, new))

    def blocks(self) -> list[BlockArgs]:
        """Every block in order, scaled, named and with its stochastic-depth rate, as Keras'
        `EfficientNetV2()` loop makes them."""
        total = float(sum(s.repeats for s in self.stages))  # Keras: before depth scaling
        out: list[BlockArgs] = []
        for i, s in enumerate(self.stages):
            cin, cout = self.round_filters(s.cin), self.round_filters(s.cout)
            for j in range(math.ceil(self.depth * s.repeats)):
                out.append(
                    BlockArgs(
                        name=f"block{i + 1}{chr(ord('a') + j)}",
                        kernel=s.kernel,
                        cin=cin if j == 0 else cout,
                        cout=cout,
                        expand=s.expand,
                        se_ratio=s.se_ratio,
                        stride=s.stride if j == 0 else 1,
                        block=s.block,
                        drop_rate=self.drop_connect_rate * len(out) / total,
                    )
                )
        return out

    @property
    def stem_width(self) -> int:
        return self.round_filters(self.stages[0].cin)

    @property
    def num_features(self) -> int:
        return self.round_filters(self.top)


def _check_stage(where: str, s: MBConvStage, before: MBConvStage | None) -> None:
    check_range(s.repeats, 1, MAX_DEPTH, f"{where}: repeats")
    check_range(s.cin, 1, MAX_WIDTH, f"{where}: cin")
    check_range(s.cout, 1, MAX_WIDTH, f"{where}: cout")
    check_range(s.expand, 1, MAX_EXPAND, f"{where}: expand")
    check_range(s.stride, 1, MAX_STRIDE, f"{where}: stride")
    check_kernel(s.kernel, where)
    if not 0.0 <= s.se_ratio <= 1.0:
        raise EdgeTrainError(f"{where}: se_ratio must be in [0, 1], got {s.se_ratio}")
    if before is not None and s.cin != before.cout:
        raise EdgeTrainError(
            f"{where}: cin {s.cin} must equal the previous stage's cout {before.cout}"
        )


# --- the builder ---------------------------------------------------------------------------------


class MBConv(nn.Module):
    """Fused-MBConv or MBConv as Keras builds them, plus the input (after stochastic depth) when
    stride is 1 and cin == cout.

    MBConv: [expand 1x1 -> BN -> act] -> depthwise kxk (stride) -> BN -> act -> [SE] -> project 1x1
    -> BN. Fused-MBConv: [expand kxk (stride) -> BN -> act] -> [SE] -> project (1x1, or kxk with the
    stride when there is no expansion) -> BN [-> act when there is no expansion].
    """

    def __init__(self, a: BlockArgs, *, eps: float, momentum: float) -> None:
        super().__init__()
        bn_kw = {"eps": eps, "momentum": momentum}
        hidden = a.cin * a.expand
        layers: list[nn.Module] = []
        if a.block == "fused":
            if a.expand != 1:
                layers.append(ConvBNAct(a.cin, hidden, a.kernel, a.stride, act=nn.SiLU, **bn_kw))
        else:
            if a.expand != 1:
                layers.append(ConvBNAct(a.cin, hidden, 1, act=nn.SiLU, **bn_kw))
            layers.append(
                ConvBNAct(hidden, hidden, a.kernel, a.stride, groups=hidden, act=nn.SiLU, **bn_kw)
            )
        if 0 < a.se_ratio <= 1:
            layers.append(SqueezeExcite(hidden, max(1, int(a.cin * a.se_ratio)), act=nn.SiLU))
        if a.block == "fused" and a.expand == 1:
            # the only conv of the block: kxk with the stride, and it keeps its activation
            layers.append(ConvBNAct(hidden, a.cout, a.kernel, a.stride, act=nn.SiLU, **bn_kw))
        else:
            layers.append(ConvBNAct(hidden, a.cout, 1, act=None, **bn_kw))
        # Every path starts with a conv (or SE's out-of-place multiply), so no in-place op ever
        # writes to the block input: safe as the residual and under activation checkpointing.
        self.conv = nn.Sequential(*layers)
        self.residual = a.stride == 1 and a.cin == a.cout
        self.drop_path = DropPath(a.drop_rate) if self.residual and a.drop_rate > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if not self.residual:
            return y
        if self.drop_path is not None:
            y = self.drop_path(y)
        return x + y


@register_family(EfficientNetV2Spec)
def build_efficientnet_v2_backbone(spec: EfficientNetV2Spec) -> nn.Sequential:
    """Turn a valid `EfficientNetV2Spec` into an nn.Sequential with one child per block (`stem`,
    `block1a` ... as Keras names them, `top`): (B, 3, H, W) -> (B, C, H/32, W/32) for the B0/B1
    strides."""
    spec.validate()
    bn_kw = {"eps": spec.bn_eps, "momentum": spec.bn_momentum}
    # a generator: the blocks are made after the stem, in forward order
    blocks = ((a.name, MBConv(a, **bn_kw), a.cout) for a in spec.blocks())
    return stem_blocks_top(spec.stem_width, blocks, spec.num_features, act=nn.SiLU, **bn_kw)


# --- the registered values -----------------------------------------------------------------------

EFFICIENTNET_V2_B0 = EfficientNetV2Spec()
EFFICIENTNET_V2_B1 = EfficientNetV2Spec(width=1.0, depth=1.1, resolution=240)
EFFICIENTNET_V2_SPECS: dict[str, EfficientNetV2Spec] = {
    "efficientnet_v2_b0": EFFICIENTNET_V2_B0,
    "efficientnet_v2_b1": EFFICIENTNET_V2_B1,
}

register_spec(
    "efficientnet_v2_b0",
    EFFICIENTNET_V2_B0,
    """EfficientNetV2-B0 as Keras applications defines it; `overrides` change fields of
    `EfficientNetV2Spec`, an unknown field raises `EdgeTrainError`.""",
)
register_spec(
    "efficientnet_v2_b1",
    EFFICIENTNET_V2_B1,
    """EfficientNetV2-B1 (B0 with depth 1.1, default input 240 px) as Keras applications defines
    it; `overrides` change fields of `EfficientNetV2Spec`, an unknown field raises
    `EdgeTrainError`.""",
)
