"""MobileNetV2 (Sandler et al. 2018) as Keras applications builds it, as data: one spec, one builder.

`mobilenet_v2` is `keras.applications.MobileNetV2(alpha=1.0)` with the paper's head: stem
Conv3x3/32 stride 2 (no bias) -> BN -> ReLU6, then inverted-residual stages (t, c, n, s) =
(1,16,1,1), (6,24,2,2), (6,32,3,2), (6,64,4,2), (6,96,3,1), (6,160,3,2), (6,320,1,1), then
Conv1x1/1280 (no bias) -> BN -> ReLU6. With a 101-class head: 2,353,253 trainable parameters and
34,112 BatchNorm moving statistics, Keras' exact counts (Keras' `count_params()` 2,387,365 is
their sum).

Keras details carried over: BN eps 1e-3 and momentum 0.999 (PyTorch momentum 0.001); channel counts
rounded with Keras' `_make_divisible(v, 8)`; the expansion width is `t * in_channels`, unrounded;
the first block (t = 1) has no expansion conv; residual iff stride 1 and in == out.

Padding: every conv here pads kernel // 2 on each side. Keras pads stride-2 convs asymmetrically
(its MobileNetV2 uses ZeroPadding2D(correct_pad) + "valid", i.e. TensorFlow "same": on an even input
0 rows/cols on top/left and 1 on bottom/right), so window i is centred on input pixel 2i + 1 there
and on 2i here. Output sizes are identical at every input size for these odd kernels; only the
sampling grid shifts by one pixel, which matters when porting Keras weights, not for training.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torch import nn

from edgetrain.errors import EdgeTrainError
from edgetrain.models.layers import InvertedResidual, make_divisible, stem_blocks_top
from edgetrain.models.registry import register_family, register_spec
from edgetrain.models.spec import (
    MAX_BLOCKS,
    MAX_DEPTH,
    MAX_EXPAND,
    MAX_MULTIPLIER,
    MAX_STRIDE,
    MAX_WIDTH,
    ModelSpec,
    check_bn,
    check_kernel,
    check_range,
)

# --- the spec ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvertedResidualStage:
    """`repeats` inverted-residual blocks with the same output width (one row of the paper's
    table 2: t, c, n, s). Only the first block has `stride`."""

    expand: int  # t: expansion ratio; 1 drops the expansion conv
    channels: int  # c: output width before the width multiplier
    repeats: int  # n
    stride: int  # s
    kernel: int = 3  # depthwise kernel


MOBILENET_V2_STAGES = (
    InvertedResidualStage(1, 16, 1, 1),
    InvertedResidualStage(6, 24, 2, 2),
    InvertedResidualStage(6, 32, 3, 2),
    InvertedResidualStage(6, 64, 4, 2),
    InvertedResidualStage(6, 96, 3, 1),
    InvertedResidualStage(6, 160, 3, 2),
    InvertedResidualStage(6, 320, 1, 1),
)


@dataclass(frozen=True)
class MobileNetV2Spec(ModelSpec):
    """A whole MobileNetV2 backbone; the defaults are Keras' MobileNetV2(alpha=1.0)."""

    family = "mobilenet_v2"
    _title = "MobileNetV2"
    _id_prefix = "mnv2"

    alpha: float = 1.0  # width multiplier on the stem and the stages (and on `head` if > 1)
    stem: int = 32  # Conv3x3 stride 2 width, before alpha
    stages: tuple[InvertedResidualStage, ...] = MOBILENET_V2_STAGES
    head: int = 1280  # final Conv1x1 width; Keras scales it only for alpha > 1
    divisor: int = 8  # channel rounding (Keras `_make_divisible`)
    bn_eps: float = 1e-3
    bn_momentum: float = 0.001  # PyTorch convention: Keras momentum 0.999

    def validate(self) -> None:
        """Raise `EdgeTrainError` if the spec cannot be built; every number is bounded
        (`MAX_*` in spec.py), the widths after the multiplier too."""
        if not 0 < self.alpha <= MAX_MULTIPLIER:
            raise EdgeTrainError(
                f"alpha must be > 0 and at most {MAX_MULTIPLIER}, got {self.alpha}"
            )
        for name in ("stem", "head", "divisor"):
            check_range(getattr(self, name), 1, MAX_WIDTH, name)
        if not self.stages:
            raise EdgeTrainError("a MobileNetV2 spec needs at least one stage")
        for i, s in enumerate(self.stages):
            _check_stage(f"stage {i}", s)
        check_range(sum(s.repeats for s in self.stages), 1, MAX_BLOCKS, "blocks in all")
        widths = [
            self.stem_width,
            self.num_features,
            *(self.width(s.channels) for s in self.stages),
        ]
        check_range(max(widths), 1, MAX_WIDTH, "the widest layer after alpha")
        check_bn(self)

    def describe(self) -> str:
        """A compact human-readable form, e.g. `a0.5|t1c16n1k3;t6c24n2k3;...|h1280`."""
        stages = ";".join(
            f"t{s.expand}c{s.channels}n{s.repeats}k{s.kernel}"
            + (f"s{s.stride}" if s.stride > 1 else "")
            for s in self.stages
        )
        return f"a{self.alpha}|{stages}|h{self.head}"

    def width(self, channels: int) -> int:
        """A stage width after the multiplier, as Keras: `_make_divisible(int(c * alpha), 8)`."""
        return make_divisible(int(channels * self.alpha), self.divisor)

    @property
    def stem_width(self) -> int:
        return make_divisible(self.stem * self.alpha, self.divisor)

    @property
    def num_features(self) -> int:
        return make_divisible(self.head * self.alpha, self.divisor) if self.alpha > 1 else self.head


def _check_stage(where: str, s: InvertedResidualStage) -> None:
    check_range(s.expand, 1, MAX_EXPAND, f"{where}: expand")
    check_range(s.channels, 1, MAX_WIDTH, f"{where}: channels")
    check_range(s.repeats, 1, MAX_DEPTH, f"{where}: repeats")
    check_range(s.stride, 1, MAX_STRIDE, f"{where}: stride")
    check_kernel(s.kernel, where)


# --- the builder ---------------------------------------------------------------------------------


def _blocks(spec: MobileNetV2Spec) -> Iterator[tuple[str, nn.Module, int]]:
    """(name, block, output width) for every inverted-residual block, `block0` ... as Keras
    numbers them; lazily, so `stem_blocks_top` makes the stem first."""
    cin = spec.stem_width
    k = 0
    for s in spec.stages:
        cout = spec.width(s.channels)
        for j in range(s.repeats):
            block = InvertedResidual(
                cin,
                cout,
                expand=s.expand,
                stride=s.stride if j == 0 else 1,
                kernel=s.kernel,
                act=nn.ReLU6,
                eps=spec.bn_eps,
                momentum=spec.bn_momentum,
            )
            yield f"block{k}", block, cout
            cin = cout
            k += 1


@register_family(MobileNetV2Spec)
def build_mobilenet_v2_backbone(spec: MobileNetV2Spec) -> nn.Sequential:
    """Turn a valid `MobileNetV2Spec` into an nn.Sequential with one child per block (`stem`,
    `block0` ... `blockN` as Keras numbers them, `top`): (B, 3, H, W) -> (B, C, H/32, W/32)."""
    spec.validate()
    return stem_blocks_top(
        spec.stem_width,
        _blocks(spec),
        spec.num_features,
        act=nn.ReLU6,
        eps=spec.bn_eps,
        momentum=spec.bn_momentum,
    )


# --- the registered value ------------------------------------------------------------------------

MOBILENET_V2 = MobileNetV2Spec()

register_spec(
    "mobilenet_v2",
    MOBILENET_V2,
    """MobileNetV2 (alpha 1.0) as Keras applications defines it; `overrides` change fields of
    `MobileNetV2Spec` (e.g. `alpha=0.5`), an unknown field raises `EdgeTrainError`.""",
)
