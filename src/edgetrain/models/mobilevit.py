"""MobileViT v1 (Mehta & Rastegari, ICLR 2022), the XXS configuration of Apple's ml-cvnets, as data.

`mobilevit_xxs`: stem Conv3x3/16 stride 2 -> BN -> SiLU; MV2 blocks (expansion 2, SiLU);
layer1 MV2 -> 16; layer2 3 x MV2 -> 24 (first stride 2); layers 3-5 each MV2 stride 2 (-> 48, 64, 80)
then a MobileViT block (transformer width d = 64, 80, 96; FFN 2d; 2, 4, 3 layers; 2x2 patches,
4 heads); final Conv1x1/320 (cvnets: min(4 * 80, 960)) -> BN -> SiLU; then the paper's head.
BN and LayerNorm keep PyTorch's defaults (eps 1e-5, momentum 0.1), as cvnets does.

Parameter count (trainable; BatchNorm running statistics not included):
- 1000-class head: 1,272,024. Compared with the paper's 1.3 M for MobileViT-XXS (Mehta & Rastegari
  2022, table 1) and ml-cvnets'/timm's ~1.27 M (timm's `mobilevit_xxs.cvnets_in1k` card rounds to
  1.3 M; its 5.14 MB fp32 weight file fits 1,272,024 parameters + 4,112 BN statistics + header):
  it agrees with both to the published precision. The head is 320 * 1000 + 1000 = 321,000, so the
  backbone is 951,024.
- 101-class head: 983,445 (= 951,024 + 320 * 101 + 101).
- BatchNorm running statistics: 4,112 elements (Keras would count them as non-trainable).
The head here is the paper's (GAP -> dropout 0.2 -> linear); cvnets' is GAP -> dropout 0.1 ->
linear, the same parameters. Training-recipe details are left out: cvnets' transformer dropout
(0.1 in its shipped MobileViT-S recipe) and its initialisation (Kaiming-normal convs, truncated-normal
linears with std 0.02); PyTorch's default initialisation is used, as for the other families.

Feature maps whose size is not a multiple of the patch size are resized up to the next multiple
(bilinear) before unfolding and back after folding, as cvnets does: at 224 px layer 5 sees 7x7 ->
8x8; at 64 px every map (8, 4, 2) is already a multiple of 2.

Padding: every conv here pads kernel // 2 on each side, as cvnets does, so nothing differs from the
reference. (Keras, for comparison, pads stride-2 convs asymmetrically: on an even input 0 rows/cols
on top/left and 1 on bottom/right; output sizes are the same for odd kernels.)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgetrain.errors import EdgeTrainError
from edgetrain.models.layers import ConvBNAct, InvertedResidual, make_divisible, stem_blocks_top
from edgetrain.models.registry import register_family, register_spec
from edgetrain.models.spec import (
    MAX_BLOCKS,
    MAX_DEPTH,
    MAX_EXPAND,
    MAX_STRIDE,
    MAX_WIDTH,
    ModelSpec,
    check_bn,
    check_kernel,
    check_range,
)

# Bounds of the transformer's own numbers (the others are in spec.py): cvnets uses 4 heads and
# 2x2 patches; 16 times that is still a transformer these blocks can mean.
MAX_HEADS = 64
MAX_PATCH = 32

# --- the spec ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MobileViTStage:
    """One cvnets layer: `mv2_blocks` MV2 blocks to `channels` (the first with `stride`), then, if
    `transformer_dim` > 0, one MobileViT block on `channels`."""

    channels: int
    stride: int = 1
    mv2_blocks: int = 1  # cvnets' MobileViT layers have exactly one MV2, the downsampling one
    expand: int = 2  # MV2 expansion ratio
    transformer_dim: int = 0  # d; 0: no MobileViT block
    ffn_dim: int = 0
    transformer_depth: int = 0  # transformer layers in the MobileViT block
    heads: int = 4
    patch: int = 2  # patch height = width


MOBILEVIT_XXS_STAGES = (
    MobileViTStage(16, stride=1, mv2_blocks=1),
    MobileViTStage(24, stride=2, mv2_blocks=3),
    MobileViTStage(48, stride=2, transformer_dim=64, ffn_dim=128, transformer_depth=2),
    MobileViTStage(64, stride=2, transformer_dim=80, ffn_dim=160, transformer_depth=4),
    MobileViTStage(80, stride=2, transformer_dim=96, ffn_dim=192, transformer_depth=3),
)


@dataclass(frozen=True)
class MobileViTSpec(ModelSpec):
    """A whole MobileViT (v1) backbone; the defaults are MobileViT-XXS."""

    family = "mobilevit"
    _title = "MobileViT"
    _id_prefix = "mvit"

    stem: int = 16  # Conv3x3 stride 2 width
    stages: tuple[MobileViTStage, ...] = MOBILEVIT_XXS_STAGES
    top: int = 320  # final Conv1x1 width (cvnets: min(4 * last stage width, 960))
    kernel: int = 3  # local-representation and fusion convs in MobileViT blocks
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    ln_eps: float = 1e-5

    def validate(self) -> None:
        """Raise `EdgeTrainError` if the spec cannot be built; every number is bounded
        (`MAX_*` in spec.py)."""
        check_range(self.stem, 1, MAX_WIDTH, "stem")
        check_range(self.top, 1, MAX_WIDTH, "top")
        check_kernel(self.kernel, "MobileViT blocks")
        if not self.ln_eps > 0:
            raise EdgeTrainError(f"ln_eps must be > 0, got {self.ln_eps}")
        if not self.stages:
            raise EdgeTrainError("a MobileViT spec needs at least one stage")
        cin = self.stem
        for i, s in enumerate(self.stages):
            _check_stage(f"layer{i + 1}", s, cin, "the stem" if i == 0 else "the previous layer")
            cin = s.channels
        blocks = sum(s.mv2_blocks + (s.transformer_dim > 0) for s in self.stages)
        check_range(blocks, 1, MAX_BLOCKS, "blocks in all")
        check_bn(self)

    @property
    def num_features(self) -> int:
        return self.top


def _check_stage(where: str, s: MobileViTStage, cin: int, before: str) -> None:
    check_range(s.channels, 1, MAX_WIDTH, f"{where}: channels")
    check_range(s.stride, 1, MAX_STRIDE, f"{where}: stride")
    check_range(s.mv2_blocks, 0, MAX_DEPTH, f"{where}: mv2_blocks")
    check_range(s.expand, 1, MAX_EXPAND, f"{where}: expand")
    check_range(s.heads, 1, MAX_HEADS, f"{where}: heads")
    check_range(s.patch, 1, MAX_PATCH, f"{where}: patch")
    check_range(s.transformer_dim, 0, MAX_WIDTH, f"{where}: transformer_dim")
    check_range(s.ffn_dim, 0, MAX_WIDTH, f"{where}: ffn_dim")
    check_range(s.transformer_depth, 0, MAX_DEPTH, f"{where}: transformer_depth")
    if s.stride > 1 and s.mv2_blocks == 0:
        raise EdgeTrainError(f"{where}: a stride needs at least one MV2 block")
    if s.mv2_blocks == 0 and s.transformer_dim == 0:
        raise EdgeTrainError(f"{where}: needs MV2 blocks or a transformer_dim > 0")
    if s.mv2_blocks == 0 and s.channels != cin:
        raise EdgeTrainError(f"{where}: without MV2 blocks, channels must equal {before}'s")
    if s.transformer_dim > 0:
        _check_transformer(where, s)


def _check_transformer(where: str, s: MobileViTStage) -> None:
    if s.ffn_dim < 1 or s.transformer_depth < 1:
        raise EdgeTrainError(
            f"{where}: a MobileViT block needs ffn_dim >= 1 and transformer_depth >= 1"
        )
    if s.transformer_dim % s.heads:
        raise EdgeTrainError(
            f"{where}: transformer_dim {s.transformer_dim} must be divisible by heads {s.heads}"
        )


# --- the builder ---------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head self-attention with biased qkv and output projections (cvnets'
    MultiHeadAttention): (B, N, d) -> (B, N, d)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        # (B, N, 3d) -> (3, B, heads, N, d/heads); qkv packed as cvnets packs it
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # scale (d/heads)^-0.5, as cvnets
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer: x + MHA(LN(x)), then x + FFN(LN(x)) with FFN = Linear -> SiLU ->
    Linear."""

    def __init__(self, dim: int, ffn_dim: int, heads: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.SiLU(), nn.Linear(ffn_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class MobileViTBlock(nn.Module):
    """Local conv kxk + 1x1 to d, transformer over unfolded p x p patches, fold, 1x1 back to C,
    concat with the input and fuse with conv kxk 2C -> C: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(
        self,
        channels: int,
        *,
        dim: int,
        ffn_dim: int,
        depth: int,
        heads: int,
        patch: int,
        kernel: int,
        eps: float,
        momentum: float,
        ln_eps: float,
    ) -> None:
        super().__init__()
        bn_kw = {"eps": eps, "momentum": momentum}
        self.patch = patch
        self.local = nn.Sequential(
            ConvBNAct(channels, channels, kernel, act=nn.SiLU, **bn_kw),
            nn.Conv2d(channels, dim, 1, bias=False),  # no BN, no activation (cvnets conv_1x1_in)
        )
        self.transformer = nn.Sequential(
            *(TransformerLayer(dim, ffn_dim, heads, ln_eps) for _ in range(depth)),
            nn.LayerNorm(dim, eps=ln_eps),
        )
        self.proj = ConvBNAct(dim, channels, 1, act=nn.SiLU, **bn_kw)
        self.fusion = ConvBNAct(2 * channels, channels, kernel, act=nn.SiLU, **bn_kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.local(x)  # (B, d, h, w)
        b, d, h, w = y.shape
        p = self.patch
        hp, wp = math.ceil(h / p) * p, math.ceil(w / p) * p
        resize = (hp, wp) != (h, w)
        if resize:  # cvnets interpolates rather than pads, so attention needs no mask
            y = F.interpolate(y, size=(hp, wp), mode="bilinear", align_corners=False)
        nh, nw = hp // p, wp // p
        # unfold: (B, d, nh*p, nw*p) -> (B*p*p, nh*nw, d); one sequence per position inside the
        # patch, attending across patches (cvnets' order: pixel index ph*p + pw, patch nh_i*nw + nw_i)
        t = y.reshape(b, d, nh, p, nw, p).permute(0, 3, 5, 2, 4, 1).reshape(b * p * p, nh * nw, d)
        t = self.transformer(t)
        # fold: the inverse permutation back to (B, d, hp, wp)
        y = t.reshape(b, p, p, nh, nw, d).permute(0, 5, 3, 1, 4, 2).reshape(b, d, hp, wp)
        if resize:
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        y = self.proj(y)  # (B, C, h, w)
        return self.fusion(torch.cat([x, y], dim=1))  # input first, as cvnets


def _blocks(spec: MobileViTSpec) -> Iterator[tuple[str, nn.Module, int]]:
    """(name, block, output width) for every MV2 and MobileViT block, `layer{i}_{j}` for the j-th
    block of layer i; lazily, so `stem_blocks_top` makes the stem first."""
    bn_kw = {"eps": spec.bn_eps, "momentum": spec.bn_momentum}
    cin = spec.stem
    for i, s in enumerate(spec.stages, start=1):
        for j in range(s.mv2_blocks):
            block = InvertedResidual(
                cin,
                s.channels,
                expand=s.expand,
                stride=s.stride if j == 0 else 1,
                # cvnets: make_divisible(int(round(cin * expand)), 8)
                hidden=make_divisible(round(cin * s.expand), 8),
                act=nn.SiLU,
                **bn_kw,
            )
            yield f"layer{i}_{j}", block, s.channels
            cin = s.channels
        if s.transformer_dim > 0:
            block = MobileViTBlock(
                cin,
                dim=s.transformer_dim,
                ffn_dim=s.ffn_dim,
                depth=s.transformer_depth,
                heads=s.heads,
                patch=s.patch,
                kernel=spec.kernel,
                ln_eps=spec.ln_eps,
                **bn_kw,
            )
            yield f"layer{i}_{s.mv2_blocks}", block, cin


@register_family(MobileViTSpec)
def build_mobilevit_backbone(spec: MobileViTSpec) -> nn.Sequential:
    """Turn a valid `MobileViTSpec` into an nn.Sequential with one child per block (`stem`,
    `layer{i}_{j}` for the j-th MV2 or MobileViT block of layer i, `top`):
    (B, 3, H, W) -> (B, top, H/32, W/32) for the XXS strides."""
    spec.validate()
    return stem_blocks_top(
        spec.stem, _blocks(spec), spec.top, act=nn.SiLU, eps=spec.bn_eps, momentum=spec.bn_momentum
    )


# --- the registered value ------------------------------------------------------------------------

MOBILEVIT_XXS = MobileViTSpec()

register_spec(
    "mobilevit_xxs",
    MOBILEVIT_XXS,
    """MobileViT-XXS (Mehta & Rastegari 2022, ml-cvnets' xx_small); `overrides` change fields of
    `MobileViTSpec`, an unknown field raises `EdgeTrainError`.""",
)
